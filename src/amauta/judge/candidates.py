"""Candidate answers for rubric grading: prompt sets, candidate specs, and N cached attempts per prompt.

A prompt set is a YAML file (`judge/prompts/<name>.yaml` or any path) of single prompts and series of
consecutive turns. A candidate is a model, optionally with a LoRA adapter and/or retrieval (RAG), and a
decoding strategy. Answers are generated through the evaluation runner (`evaluate/runner.py`), whose
per-item cache is keyed by the weights (adapter hash) and the task settings: a killed run resumes where
it stopped, and a changed candidate (new adapter, re-built index, other decoding) is regenerated.
Series are fed turn by turn: turn k sees the model's own answers to turns 1..k-1 of the same attempt.
With an endpoint (`--generate-base-url`, `evaluate.generation.EndpointGenerator`), the answers come from
the served model named for each candidate instead of a model loaded here; retrieval stays here.
"""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from amauta.core.config import read_yaml
from amauta.core.errors import AmautaError, did_you_mean
from amauta.core.files import read_jsonl, sha256_file
from amauta.evaluate.candidate_spec import CandidateSpec, rag_index_fingerprint

PROMPTS_DIR = Path(__file__).parent / "prompts"
DETERMINISTIC = ("greedy", "beam", "contrastive")  # every attempt would be the same answer


# ---------------------------------------------------------------------------------------------------------
# Prompt sets
# ---------------------------------------------------------------------------------------------------------

@dataclass
class PromptItem:
    """One prompt, or one series of consecutive turns (the conversation carries over between them).

    id: unique within the set. category: basic, complex, creative, contextual... (a report row each).
    turns: the user's messages in order (one for a single prompt). references: a reference answer per turn
    (None where there is none); the judge compares against it for accuracy. key_facts: per turn, the values
    a correct answer must contain (None: the values its reference states, `reference_key_facts`).
    """

    id: str
    category: str
    turns: list[str]
    references: list[str | None]
    line: int = 0
    key_facts: list[list[str] | None] = field(default_factory=list)


@dataclass
class PromptSet:
    """A named list of prompt items with an optional system prompt."""

    name: str
    path: Path
    items: list[PromptItem]
    system: str | None = None
    description: str = ""
    sha256: str = ""

    def categories(self) -> list[str]:
        """Categories in order of first appearance."""
        return list(dict.fromkeys(item.category for item in self.items))

    def units(self) -> int:
        """How many answers one attempt of one candidate produces (one per turn)."""
        return sum(len(item.turns) for item in self.items)


def builtin_sets() -> list[str]:
    """Names of the prompt sets shipped with Amauta."""
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))


def resolve_prompt_set(name_or_path: str | Path) -> Path:
    """A shipped set's name (`general-es`, `law-ec`) or a YAML path → the file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = PROMPTS_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise AmautaError(f"prompt set '{name_or_path}' not found{did_you_mean(str(name_or_path), builtin_sets())}; "
                      f"use one of {', '.join(builtin_sets())} or a path to a YAML file")


def _item_lines(text: str) -> list[int]:
    """The 1-based line where each entry of `items:` starts (for error messages)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "items" and isinstance(value, yaml.SequenceNode):
            return [node.start_mark.line + 1 for node in value.value]
    return []


def load_prompt_set(name_or_path: str | Path, limit: int | None = None) -> PromptSet:
    """Read and check a prompt set; every problem is one line naming the file, line and item.

    name_or_path: a shipped set's name or a YAML path.
    limit: keep only the first `limit` items of each category (quick runs).
    """
    path = resolve_prompt_set(name_or_path)
    data = read_yaml(path)  # invalid YAML → file:line
    unknown = set(data) - {"name", "description", "system", "items"}
    if unknown:
        key = sorted(unknown)[0]
        raise AmautaError(f"{path}: unknown key '{key}'{did_you_mean(key, ['name', 'description', 'system', 'items'])}")
    raw_items = data.get("items")
    if not raw_items:
        raise AmautaError(f"{path}: the prompt set is empty; add at least one entry under 'items:' "
                          "(each with id, category and prompt or turns)")
    if not isinstance(raw_items, list):
        raise AmautaError(f"{path}: 'items' must be a list of prompts")
    lines = _item_lines(path.read_text(encoding="utf-8-sig"))
    items: list[PromptItem] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_items):
        line = lines[index] if index < len(lines) else 0
        where = f"{path}:{line}" if line else f"{path}: item {index + 1}"
        items.append(_parse_item(raw, where, seen))
        items[-1].line = line
    if limit:
        counts: dict[str, int] = {}
        kept = []
        for item in items:
            counts[item.category] = counts.get(item.category, 0) + 1
            if counts[item.category] <= limit:
                kept.append(item)
        items = kept
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        raise AmautaError(f"{path}: 'system' must be text")
    return PromptSet(name=str(data.get("name") or path.stem), path=path, items=items, system=system or None,
                     description=str(data.get("description") or ""), sha256=sha256_file(path))


def _parse_item(raw: Any, where: str, seen: set[str]) -> PromptItem:
    if not isinstance(raw, dict):
        raise AmautaError(f"{where}: each item must be a mapping with id, category and prompt (or turns)")
    allowed = {"id", "category", "prompt", "reference", "key_facts", "turns"}
    for key in raw:
        if key not in allowed:
            raise AmautaError(f"{where}: unknown key '{key}'{did_you_mean(str(key), allowed)}")
    item_id = str(raw.get("id") or "").strip()
    if not item_id:
        raise AmautaError(f"{where}: item without an 'id'; give each item a unique id such as basic-01")
    if item_id in seen:
        raise AmautaError(f"{where}: duplicate id '{item_id}'; ids must be unique within a set")
    seen.add(item_id)
    category = str(raw.get("category") or "").strip()
    if not category:
        raise AmautaError(f"{where}: item '{item_id}' has no 'category' (e.g. basic, complex, creative, contextual)")
    if ("prompt" in raw) == ("turns" in raw):
        raise AmautaError(f"{where}: item '{item_id}' needs exactly one of 'prompt' (one question) or 'turns' (a series)")
    if "prompt" in raw:
        prompt = raw["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise AmautaError(f"{where}: item '{item_id}' has an empty prompt")
        reference = raw.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise AmautaError(f"{where}: item '{item_id}': 'reference' must be text")
        return PromptItem(item_id, category, [prompt.strip()], [reference.strip() if reference else None],
                          key_facts=[_key_facts(raw, where, item_id)])
    turns_raw = raw["turns"]
    if not isinstance(turns_raw, list) or not turns_raw:
        raise AmautaError(f"{where}: item '{item_id}': 'turns' must be a non-empty list of prompts")
    if raw.get("reference") is not None or raw.get("key_facts") is not None:
        raise AmautaError(f"{where}: item '{item_id}': put references and key facts inside each turn "
                          "({prompt: ..., reference: ..., key_facts: [...]}) for a series")
    turns, refs, facts = [], [], []
    for k, turn in enumerate(turns_raw, start=1):
        if isinstance(turn, dict):
            text, ref = turn.get("prompt"), turn.get("reference")
        else:
            text, ref = turn, None
        if not isinstance(text, str) or not text.strip():
            raise AmautaError(f"{where}: item '{item_id}': turn {k} is empty")
        turns.append(text.strip())
        refs.append(str(ref).strip() if ref else None)
        facts.append(_key_facts(turn, where, item_id) if isinstance(turn, dict) else None)
    return PromptItem(item_id, category, turns, refs, key_facts=facts)


def _key_facts(raw: dict, where: str, item_id: str) -> list[str] | None:
    """An item's (or turn's) optional `key_facts`: a list of texts, such as ["15 %", "día 28 | 28 de marzo"]."""
    facts = raw.get("key_facts")
    if facts is None:
        return None
    if not isinstance(facts, list) or not all(isinstance(f, str) and f.strip() for f in facts):
        raise AmautaError(f"{where}: item '{item_id}': 'key_facts' must be a list of texts such as "
                          "[\"15 %\", \"día 28 | 28 de marzo\"] (\"|\" separates alternatives)")
    return [f.strip() for f in facts]


# ---------------------------------------------------------------------------------------------------------
# Generation through the evaluation runner (its per-item cache gives resume for free)
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Answer:
    """One answer: one turn of one attempt of one prompt item, by one candidate."""

    candidate: str
    item: str
    turn: int
    attempt: int
    category: str
    prompt: str
    answer: str
    reference: str | None = None
    key_facts: list[str] | None = None  # None: the values the reference states
    new_tokens: int = 0
    seconds: float = 0.0
    finish_reason: str = ""
    sources: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.candidate, self.item, self.turn, self.attempt)


def attempts_for(spec: CandidateSpec, n: int) -> int:
    """Deterministic strategies give the same answer every time: one attempt stands for all N."""
    return 1 if spec.strategy in DETERMINISTIC else n


def _seed(base: int, item_id: str, turn: int, attempt: int) -> int:
    digest = hashlib.sha256(f"{item_id}#{turn}".encode()).digest()
    return base + 1000 * attempt + int.from_bytes(digest[:2], "big") % 1000


def _hit_label(hit: Any) -> str:
    """Where a retrieved passage came from ('iva.md, Art. 2'), as the RAG room cites it."""
    if hasattr(hit, "citation"):
        return str(hit.citation())
    source = getattr(hit, "source", None) or "?"
    article = getattr(hit, "article", None)
    return str(source) + (f", {article}" if article else "")


class CandidateTask:
    """The runner's Task for one candidate: each item is one attempt at one prompt (a whole series)."""

    name = "candidates"

    def __init__(self, pset: PromptSet, spec: CandidateSpec, *, n: int, max_new_tokens: int, seed: int,
                 rag_top_k: int, endpoint: Any = None, endpoint_model: str | None = None):
        """endpoint: an `EndpointGenerator` that writes the answers as `endpoint_model` (None: in-process)."""
        self.pset, self.spec, self.n = pset, spec, n
        self.max_new_tokens, self.seed, self.rag_top_k = max_new_tokens, seed, rag_top_k
        self.endpoint, self.endpoint_model = endpoint, endpoint_model
        self.temperature = 0.0
        if endpoint is not None:
            from amauta.evaluate.generation import endpoint_temperature

            self.temperature = endpoint_temperature(spec.strategy, spec.model, spec.label)
        self._rag = None
        self._rag_lock = threading.Lock()
        self._by_id = {item.id: item for item in pset.items}

    def config_key(self) -> dict[str, Any]:
        key = {"set": self.pset.sha256, "rag": self.spec.rag_index, "rag_top_k": self.rag_top_k,
               "rag_index": rag_index_fingerprint(self.spec.rag_index) if self.spec.rag_index else None,
               "strategy": self.spec.strategy, "max_new_tokens": self.max_new_tokens, "seed": self.seed}
        if self.endpoint is not None:  # answers of the served model are cached apart from in-process ones
            key["endpoint_model"] = self.endpoint_model
        return key

    def items(self) -> list[dict[str, Any]]:
        return [{"id": f"{item.id}@{attempt}", "item": item.id, "attempt": attempt}
                for item in self.pset.items for attempt in range(attempts_for(self.spec, self.n))]

    def length(self, item: dict[str, Any]) -> int:
        """The same for every attempt: each is answered alone, in the prompt set's order."""
        return 0

    def evaluate(self, loaded: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self._open_index()
        if self.endpoint is not None and len(batch) > 1:  # a batch of series asked at once; turns stay in order
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                return list(pool.map(lambda row: self._answer_series(None, self._by_id[row["item"]], row["attempt"]),
                                     batch))
        return [self._answer_series(loaded, self._by_id[row["item"]], row["attempt"]) for row in batch]

    def _open_index(self) -> None:
        if self.spec.rag_index and self._rag is None:
            from amauta.rag.answer import RagAnswerer  # the RAG room; only needed for rag candidates

            self._rag = RagAnswerer(self.spec.rag_index, top_k=self.rag_top_k)

    def _answer_series(self, loaded: Any, item: PromptItem, attempt: int) -> dict[str, Any]:
        from amauta.chat.decoding import GenerationSettings
        from amauta.chat.generate import generate

        history: list[dict[str, str]] = []
        turns = []
        for turn, question in enumerate(item.turns):
            sources: list[str] = []
            if self._rag is not None:
                # The RAG room's own Spanish system prompt (answer from the passages, cite them); passages
                # are shortened to fit the model's context.
                with self._rag_lock:  # one retrieval at a time: series may be asked concurrently (endpoint)
                    messages, hits = self._rag.build_messages(question, history=history or None, loaded=loaded,
                                                              max_new_tokens=self.max_new_tokens)
                sources = [_hit_label(h) for h in hits]
            else:
                system = [{"role": "system", "content": self.pset.system}] if self.pset.system else []
                messages = system + history + [{"role": "user", "content": question}]
                hits = None
            if hits == []:
                # Nothing relevant retrieved: `amauta rag ask` answers "not found" without asking the model.
                from amauta.rag.answer import NOT_FOUND

                text, record = NOT_FOUND, {"new_tokens": 0, "seconds": 0.0, "finish_reason": "not_found"}
            elif self.endpoint is not None:
                started = time.perf_counter()
                text = self.endpoint.complete(self.endpoint_model, messages, max_tokens=self.max_new_tokens,
                                              temperature=self.temperature)
                # The chat API's text carries no token count or stop reason here: left unknown, not guessed.
                record = {"new_tokens": 0, "seconds": round(time.perf_counter() - started, 3), "finish_reason": ""}
            else:
                settings = GenerationSettings.from_profile(loaded.profile, strategy=self.spec.strategy,
                                                           max_new_tokens=self.max_new_tokens,
                                                           seed=_seed(self.seed, item.id, turn, attempt))
                result = generate(loaded, messages, settings)
                text = result.text.strip()
                record = {"new_tokens": int(result.new_tokens), "seconds": round(float(result.seconds), 3),
                          "finish_reason": str(result.finish_reason)}
            turns.append({"prompt": question, "answer": text, **record, "sources": sources})
            # The conversation carries over: the next turn sees this question and the model's own answer.
            history += [{"role": "user", "content": question}, {"role": "assistant", "content": text}]
        return {"candidate": self.spec.label, "item": item.id, "attempt": attempt, "category": item.category,
                "turns": turns}

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        turns = [t for row in rows for t in row["turns"]]
        return {"answers": len(turns),
                "mean_new_tokens": round(sum(t["new_tokens"] for t in turns) / max(1, len(turns)), 1),
                "truncated": sum(1 for t in turns if t["finish_reason"] == "length"),
                "seconds": round(sum(t["seconds"] for t in turns), 1)}


def candidate_dir(out_dir: Path, spec: CandidateSpec) -> Path:
    """Where one candidate's answers live: OUT/answers/<label as a safe folder name>."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.label).strip("._") or "candidate"
    return out_dir / "answers" / slug


class _SharedLoader:
    """Load each (model, adapter) once for consecutive candidates that share it (base and rag:X)."""

    def __init__(self):
        self.key: tuple | None = None
        self.loaded: Any = None

    def __call__(self, spec: Any, **load_kwargs: Any) -> Any:
        key = (spec.model, spec.adapter, tuple(sorted(load_kwargs.items())))
        if key != self.key:
            from amauta.models.load import load_model

            self.loaded = None
            gc.collect()
            self.loaded = load_model(spec.model, adapter=spec.adapter, **load_kwargs)
            self.key = key
        return self.loaded


def generate_candidates(pset: PromptSet, specs: list[CandidateSpec], out_dir: Path, *, n: int = 3,
                        max_new_tokens: int = 256, seed: int = 0, rag_top_k: int = 4,
                        load_options: dict[str, Any] | None = None, loader: Callable[..., Any] | None = None,
                        show_progress: bool = True, endpoint: Any = None,
                        endpoint_models: dict[str, str] | None = None) -> list[Answer]:
    """Generate (or read from the cache) every answer of every candidate, in candidate order.

    pset: the prompt set. specs: the candidates. out_dir: the judge run folder (answers go to OUT/answers/).
    n: attempts per prompt (the thesis used 3). max_new_tokens: answer length cap.
    seed: base seed of the sampling draws. rag_top_k: passages retrieved per question for rag candidates.
    load_options: quantization/dtype/device for load_model. loader: replaces load_model (tests).
    show_progress: draw the runner's progress bar.
    endpoint: an `EndpointGenerator` that writes every answer (no candidate model is loaded here), asking
        for candidate label → `endpoint_models[label]`.
    """
    from amauta.evaluate.runner import ModelSpec, run_eval

    shared = loader or _SharedLoader()
    if endpoint is not None:
        shared = _no_model  # the endpoint answers: nothing to load in this process
    # Candidates sharing weights run back to back so the shared loader keeps one model in memory.
    ordered = sorted(specs, key=lambda s: (s.model, s.adapter or ""))
    answers: dict[str, list[Answer]] = {}
    for spec in ordered:
        task = CandidateTask(pset, spec, n=n, max_new_tokens=max_new_tokens, seed=seed, rag_top_k=rag_top_k,
                             endpoint=endpoint, endpoint_model=(endpoint_models or {}).get(spec.label))
        model_spec = ModelSpec(spec.label, spec.model, spec.adapter)
        folder = candidate_dir(out_dir, spec)
        # In-process, one series at a time; an endpoint takes `workers` series at once (each turn by turn).
        batch_size = endpoint.workers if endpoint is not None else 1
        # No local numerics touch an endpoint's answers: a fixed float32 keeps the batch size (--generate-workers)
        # and the device out of the cache key, which the runner adds for bf16.
        load_kwargs = {"dtype": "float32"} if endpoint is not None else load_options or {}
        result = run_eval(task, [model_spec], folder, batch_size=batch_size, loader=shared,
                          load_kwargs=load_kwargs, inputs=[pset.path], show_progress=show_progress,
                          config={"candidate": asdict(spec), **task.config_key(), "n": n})
        answers[spec.label] = [
            Answer(candidate=spec.label, item=row["item"], turn=t, attempt=row["attempt"], category=row["category"],
                   prompt=turn["prompt"], answer=turn["answer"], reference=_reference(pset, row["item"], t),
                   key_facts=_item_key_facts(pset, row["item"], t),
                   new_tokens=turn["new_tokens"], seconds=turn["seconds"], finish_reason=turn["finish_reason"],
                   sources=turn.get("sources") or [])
            for row in result.rows[spec.label] for t, turn in enumerate(row["turns"])]
    return [a for spec in specs for a in answers[spec.label]]


def _no_model(spec: Any, **load_kwargs: Any) -> None:
    """The loader when an endpoint writes the answers: no model in this process."""
    return None


def _reference(pset: PromptSet, item_id: str, turn: int) -> str | None:
    item = next((i for i in pset.items if i.id == item_id), None)
    return item.references[turn] if item and turn < len(item.references) else None


def _item_key_facts(pset: PromptSet, item_id: str, turn: int) -> list[str] | None:
    item = next((i for i in pset.items if i.id == item_id), None)
    return item.key_facts[turn] if item and turn < len(item.key_facts) else None


def conversation_before(answers_by_key: dict[tuple, Answer], answer: Answer) -> list[dict[str, str]]:
    """The earlier turns of `answer`'s series as messages (the model's own previous answers)."""
    messages = []
    for turn in range(answer.turn):
        prev = answers_by_key.get((answer.candidate, answer.item, turn, answer.attempt))
        if prev is None:
            break
        messages += [{"role": "user", "content": prev.prompt}, {"role": "assistant", "content": prev.answer}]
    return messages


def read_answers(out_dir: Path) -> list[Answer]:
    """The answers saved in a judge run folder (from its answers.jsonl), for grading and re-summaries."""
    path = Path(out_dir) / "answers.jsonl"
    if not path.is_file():
        raise AmautaError(f"{out_dir}: no answers.jsonl; is this a judge run folder (amauta eval judge --out)?")
    names = set(Answer.__dataclass_fields__)
    return [Answer(**{k: v for k, v in row.items() if k in names}) for row in read_jsonl(path)]
