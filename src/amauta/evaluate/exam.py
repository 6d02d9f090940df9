"""`amauta eval exam`: did a model learn what the documents say? Closed-book and open-book, no judge.

Every candidate (`base`, an adapter run, `rag:INDEX`, `ADAPTER+rag:INDEX`, the judge's syntax) takes the
exam's items (`amauta.data.exam_items`) in one or more modes, each a row of the result:

- `closed`: the question alone (candidates without retrieval);
- `open`: the question and the passages the candidate's index returns (`rag:INDEX` candidates), in the
  prompt `amauta rag ask` builds (`RagAnswerer.build_messages`), so the exam measures what users get;
- `gold` (`--gold-passage`): the question and the item's own source chunk, found by file and article in
  the exam's documents, an upper bound for retrieval (one row per model);
- `options` (on by default): the options with the question withheld; what a model gets right here it
  guesses from familiar strings, not from the question (one row per model).

Each item is scored twice, without any judge:

- multiple choice by log-likelihood with the packed Belebele scorer (`loglik.py`): `acc` picks the option
  of highest total log-probability, `acc_norm` the highest per character;
- a short answer by greedy generation (the path XQuAD uses), scored by `amauta.data.answer_match.score_answer`: key-fact
  recall and precision, correct, abstained. With `--generate-base-url` the short answers come from an
  OpenAI-compatible endpoint (a vLLM server, `amauta serve`) instead, each model asked by its served name;
  multiple choice is always scored here, on the model loaded in this process.

Phrasings of one fact are not independent, so every interval is a bootstrap over facts, and so is the
paired delta of each row against the first. An adapter whose training data holds a dev or test question
of the exam is refused before anything is scored.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from amauta.core.config import StageConfig, read_yaml
from amauta.core.errors import AmautaError
from amauta.core.files import atomic_write_text, sha256_file
from amauta.core.summaries import Chart, ReportSection, register_section
from amauta.data.exam_items import ExamItem, exam_counts, iter_dataset_texts, leaked_questions, read_exam
from amauta.evaluate import stats
from amauta.evaluate.candidate_spec import CandidateSpec, parse_candidates, rag_index_fingerprint
from amauta.evaluate.runner import ModelSpec, run_eval
from amauta.models.types import Device, DType, Quantization
from amauta.rag.answer import NOT_FOUND, RagAnswerer
from amauta.rag.answer import SYSTEM_PROMPT as RAG_SYSTEM_PROMPT
from amauta.rag.grounding import Grounding
from amauta.rag.retrieve import Hit

if TYPE_CHECKING:  # loglik imports torch: the CLI imports this module for ExamConfig's options, torch only on use
    from amauta.evaluate.loglik import SharedPrefix

Mode = Literal["closed", "open", "gold", "options"]
MODE_NAMES = {"closed": "libro cerrado", "open": "RAG", "gold": "con la fuente", "options": "solo opciones"}

# Closed-book, the model gets the same instruction as the RAG prompt minus the passages, so that the two
# modes differ only in what the model may read; the abstention wording is the exam's own option.
CLOSED_BOOK_SYSTEM = ("Eres un asistente que responde en español preguntas sobre documentos que conoces. Responde "
                      "de forma breve y precisa. Si no sabes la respuesta, responde «Los documentos no lo indican» "
                      "y no inventes nada.")
# The options-only baseline asks this instead of the item's question: every item gets the same prompt, so
# the choice can only come from the options themselves.
OPTIONS_ONLY_QUESTION = "¿Cuál es la respuesta?"
PLAIN_ANSWER_CUE = "\nRespuesta:"
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


class ExamConfig(StageConfig):
    """`amauta eval exam`: an exam over documents, closed-book and open-book, for several candidates."""

    exam: str = Field("examples/exams/leyes.jsonl", description="Exam JSONL (docs/evaluate.md, 'The document exam').")
    split: Literal["train", "dev", "test"] = Field(
        "test", description="Split to score: dev while choosing recipes, test once at the end.")
    candidates: str = Field("base", description="Comma list of base, run/adapter folders, rag:INDEX and "
                                                "ADAPTER+rag:INDEX (NAME=... labels one); the first is the reference.")
    model: str = Field("smollm2-135m-instruct", description="Base model: registry name, hub id, folder or GGUF.")
    gold_passage: bool = Field(False, description="Also score each model open-book with the item's own source "
                                                  "chunk: an upper bound for retrieval.")
    docs: str | None = Field(None, description="Documents the exam cites (for --gold-passage); default: the docs "
                                               "folder beside the exam's folder, else examples/docs.")
    options_only: bool = Field(True, description="Also score each model with the question withheld (answers "
                                                 "guessed from familiar options).")
    short_answer: bool = Field(True, description="Also generate a short answer per item and score its key facts.")
    prompt_format: Literal["chat", "plain"] = Field(
        "chat", description="Multiple choice in the model's chat template (as users ask it), or plain text "
                            "'QUESTION\\nRespuesta: OPTION' (the lm-eval export's format).")
    rag_top_k: int = Field(4, ge=1, description="Passages retrieved per question for rag:INDEX candidates.")
    max_context_chars: int = Field(6000, ge=200, description="Characters of passages in an open-book prompt.")
    max_new_tokens: int = Field(64, ge=1, description="Tokens a short answer may take.")
    limit: int | None = Field(None, ge=1, description="Score only the first N items of the split (quick checks).")
    seed: int = Field(0, description="Seed of the bootstrap intervals.")
    export_lm_eval: str | None = Field(None, description="Write the exam as an lm-evaluation-harness task into "
                                                         "this folder instead of scoring it.")
    batch_size: int = Field(8, ge=1, description="Items per forward pass or generation batch.")
    generate_base_url: str | None = Field(None, description="An OpenAI-compatible endpoint that writes the short "
                                          "answers (e.g. `amauta serve --backend vllm`); multiple choice stays "
                                          "in-process. Key: --generate-api-key, else $AMAUTA_LLM_API_KEY, "
                                          "$AMAUTA_API_KEY, $OPENAI_API_KEY.")
    generate_model: str | None = Field(None, description="The endpoint's model for `base` (default: the first it "
                                       "lists); a candidate NAME=RUN is asked as model NAME (`amauta serve "
                                       "--adapter NAME=RUN`), an unnamed run as its folder's name.")
    generate_workers: int = Field(8, ge=1, le=256, description="Short answers asked of the endpoint at once "
                                                               "(at most --batch-size).")
    generate_timeout: float = Field(300, gt=0, description="Seconds to wait for one answer from the endpoint.")
    out: str = Field("runs/eval-exam", description="Eval folder (items.jsonl, summary.json, manifest.json).")
    dtype: DType = Field("auto", description="auto (float32 on a CPU, bf16 on a GPU), float32, bfloat16 or float16.")
    device: Device = Field("auto", description="auto, cpu or cuda.")
    quantization: Quantization = Field("none", description="none, 8bit or 4bit (bitsandbytes).")

    def load_kwargs(self) -> dict[str, str]:
        """How `load_model` loads each model."""
        return {"dtype": self.dtype, "device": self.device, "quantization": self.quantization}


# --- the documents the exam cites (--gold-passage) ------------------------------------------------------------

def default_docs(exam: str | Path) -> Path:
    """The exam's documents: a docs/ folder beside the exam or beside its folder, else examples/docs."""
    exam = Path(exam)
    for folder in (exam.parent / "docs", exam.parent.parent / "docs", Path("examples/docs")):
        if folder.is_dir():
            return folder
    raise AmautaError(f"{exam}: no docs folder beside the exam (looked in {exam.parent / 'docs'} and "
                      f"{exam.parent.parent / 'docs'}); pass --docs with the documents the exam cites")


def source_chunks(docs: str | Path, items: Iterable[ExamItem]) -> dict[tuple[str, str | None], list[Any]]:
    """(file, article) → the chunks of that article (all its parts), for every source the items cite.

    Documents are chunked as `amauta rag index` chunks them (`amauta.documents`, default sizes); a file is
    matched by its path under `docs` or by its name. An item citing a file or article that the documents
    do not hold stops with one line naming the exam line.
    """
    from amauta.documents import chunk_document, load_document
    from amauta.documents.ingest import iter_document_paths

    root = Path(docs)
    by_file: dict[str, list[Any]] = {}
    for path in iter_document_paths([root]):
        chunks = chunk_document(load_document(path))
        for name in dict.fromkeys([path.relative_to(root).as_posix() if root.is_dir() else path.name, path.name]):
            by_file.setdefault(name, chunks)
    found: dict[tuple[str, str | None], list[Any]] = {}
    for item in items:
        key = (item.source.file, item.source.article)
        if key in found:
            continue
        chunks = by_file.get(item.source.file)
        if chunks is None:
            raise AmautaError(f"{item.where or item.id}: item {item.id!r} cites {item.source.file!r}, which is not in "
                              f"{root}; pass --docs with the exam's documents or fix the item's source.file")
        chosen = [c for c in chunks if c.article == item.source.article]
        if not chosen:
            articles = ", ".join(dict.fromkeys(c.article for c in chunks if c.article)) or "none"
            raise AmautaError(f"{item.where or item.id}: item {item.id!r} cites {item.source.article!r} of "
                              f"{item.source.file!r}, which that file does not have (its articles: {articles}); "
                              "fix the item's source.article")
        found[key] = chosen
    return found


def _as_hit(chunk: Any) -> Hit:
    return Hit(id=chunk.id, text=chunk.text, source=chunk.source, title=chunk.title, page=chunk.page,
               article=chunk.article, heading=chunk.heading)


class GoldPassages(RagAnswerer):
    """`RagAnswerer`'s prompt and context fitting, with the item's own source chunk in place of retrieval.

    chunks: from `source_chunks`. max_context_chars: characters of passages in the prompt.
    """

    def __init__(self, chunks: dict[tuple[str, str | None], list[Any]], max_context_chars: int = 6000):
        # No index to open: `build_messages` only needs `retrieve`, the context budget and the prompt.
        self.max_context_chars = max_context_chars
        self.top_k = max((len(c) for c in chunks.values()), default=1)
        self.chunks = chunks
        self._next: list[Hit] = []

    def retrieve(self, question: str) -> list[Hit]:
        return list(self._next)

    def messages_for(self, item: ExamItem, loaded: Any, max_new_tokens: int) -> tuple[list[dict], list[Hit]]:
        """The RAG prompt for `item` with its source chunk(s) as the passages."""
        self._next = [_as_hit(c) for c in self.chunks[(item.source.file, item.source.article)]]
        # Passed as checked hits: the gold chunk is the upper bound, so RAG's grounding gate does not apply.
        return self.build_messages(item.question, loaded=loaded, max_new_tokens=max_new_tokens, hits=list(self._next))


def chunks_digest(chunks: dict[tuple[str, str | None], list[Any]]) -> str:
    """A hash of the cited chunks' ids (which hash their text), so edited documents are rescored."""
    blob = json.dumps(sorted([f, a, [c.id for c in cs]] for (f, a), cs in chunks.items()), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- leaks: an adapter trained on the exam's questions ------------------------------------------------------

def training_dataset(adapter: str | Path) -> tuple[Path | None, str]:
    """(the dataset folder an adapter was trained on, '') or (None, why it is unknown).

    Read from the training run's manifest.json (or its config.yaml): the adapter folder, the run folder
    above `adapter/`, or the run folder above a checkpoint.
    """
    path = Path(adapter)
    for folder in (path, path.parent, path.parent.parent):
        dataset = _recorded_dataset(folder)
        if dataset:
            for where in (Path(dataset), folder / dataset):
                if where.exists():
                    return where, ""
            return None, f"its run records the dataset {dataset}, which is not there any more"
    return None, "no training run manifest.json or config.yaml beside it"


def _recorded_dataset(folder: Path) -> str | None:
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            data = {}
        if data.get("stage") == "train" and isinstance(data.get("config"), dict):
            return data["config"].get("dataset")
    config = folder / "config.yaml"
    if config.is_file() and (folder / "adapter").is_dir():
        dataset = read_yaml(config).get("dataset")
        return str(dataset) if dataset else None
    return None


def check_leaks(candidates: list[CandidateSpec], exam_path: str | Path) -> dict[str, str]:
    """Refuse (one line, naming the training file and line) an adapter trained on a dev or test question.

    Returns, per candidate with an adapter, what was checked ("checked: DATASET") or why it could not be.
    """
    report: dict[str, str] = {}
    items: list[ExamItem] | None = None
    for spec in candidates:
        # A full fine-tuning run is a model folder of its own (its weights in model/): checked like an adapter.
        trained = spec.adapter or (spec.model if (Path(spec.model) / "model" / "config.json").is_file() else None)
        if not trained or trained in report:
            continue
        dataset, why = training_dataset(trained)
        if dataset is None:
            report[trained] = f"not checked: {why}"
            continue
        items = items if items is not None else read_exam(exam_path)
        leaks = leaked_questions(items, iter_dataset_texts(dataset))
        if leaks:
            leak = leaks[0]
            more = f" (and {len(leaks) - 1} more)" if len(leaks) > 1 else ""
            raise AmautaError(f"{leak.where}: holds the {leak.split} question {leak.item_id!r} of {exam_path}"
                              f"{more}, and {trained} was trained on it, so it cannot be scored on this exam: "
                              "remove the exam's dev/test questions from the dataset and retrain")
        report[trained] = f"checked: {dataset}"
    return report


# --- who takes the exam, and how ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExamineeSpec(ModelSpec):
    """A model in one exam mode: a row of the result (the runner caches it under its own key).

    candidate: the candidate's label. mode: closed, open, gold or options. rag_index: the index of an
    open row. settings: JSON of what else changes this row's scores (index hash, passages, documents).
    """

    candidate: str = ""
    mode: str = "closed"
    rag_index: str | None = None
    settings: str = "{}"

    def fingerprint(self) -> dict[str, Any]:
        return {**super().fingerprint(), "mode": self.mode, "settings": json.loads(self.settings)}


@dataclass
class Examinee:
    """What the exam task gets from the loader: the loaded model in a mode, with its passages' source."""

    loaded: Any
    mode: str
    passages: Any = None  # a RagAnswerer (open) or GoldPassages (gold)
    prefix: SharedPrefix = field(default_factory=lambda: _new_prefix())
    endpoint_model: str | None = None  # its name on the endpoint that writes the short answers


def _new_prefix() -> SharedPrefix:
    """An empty KV cache of the shared prompt start (loglik, and torch with it, load on first use)."""
    from amauta.evaluate.loglik import SharedPrefix

    return SharedPrefix()


class _ExamLoader:
    """Load each (model, adapter) once for consecutive rows that share it, and open each index once."""

    def __init__(self, base_loader: Callable[..., Any], gold: GoldPassages | None, rag_top_k: int,
                 max_context_chars: int, endpoint_names: dict[tuple[str, str | None], str] | None = None):
        self.base_loader, self.gold = base_loader, gold
        self.endpoint_names = endpoint_names or {}
        self.rag_top_k, self.max_context_chars = rag_top_k, max_context_chars
        self.key: tuple | None = None
        self.loaded: Any = None
        self.answerers: dict[str, RagAnswerer] = {}

    def __call__(self, spec: ExamineeSpec, **load_kwargs: Any) -> Examinee:
        key = (spec.model, spec.adapter, tuple(sorted(load_kwargs.items())))
        if key != self.key:
            if self.loaded is not None:  # free the previous model before the next one is read
                self.loaded = None
                gc.collect()
            self.loaded = self.base_loader(spec, **load_kwargs)
            self.key = key
        passages = None
        if spec.mode == "open":
            if spec.rag_index not in self.answerers:
                self.answerers[spec.rag_index] = RagAnswerer(spec.rag_index, top_k=self.rag_top_k,
                                                             max_context_chars=self.max_context_chars)
            passages = self.answerers[spec.rag_index]
        elif spec.mode == "gold":
            passages = self.gold
        return Examinee(self.loaded, spec.mode, passages,
                        endpoint_model=self.endpoint_names.get((spec.model, spec.adapter)))

    def release(self) -> None:
        """Drop the model and the indexes (the runner collects garbage after each row)."""
        self.loaded, self.key, self.answerers = None, None, {}


def _weights_label(spec: CandidateSpec, candidates: list[CandidateSpec], base_model: str) -> str:
    """How to name a candidate's model without its retrieval: a listed candidate with the same weights, else
    the adapter's run name, the other model's name, or 'base'."""
    for other in candidates:
        if not other.rag_index and (other.model, other.adapter) == (spec.model, spec.adapter):
            return other.label
    if spec.adapter:
        path = Path(spec.adapter).resolve()
        return path.parent.name if path.name == "adapter" else path.name
    return spec.model if spec.model != base_model else "base"


def build_rows(config: ExamConfig, candidates: list[CandidateSpec], gold_digest: str | None) -> list[ExamineeSpec]:
    """The result's rows in order: each candidate in its own mode, then the gold-passage and options-only
    rows of each distinct model. The first row is the reference of the paired comparisons."""
    rows: list[ExamineeSpec] = []
    for spec in candidates:
        if spec.rag_index:
            settings = {"index": rag_index_fingerprint(spec.rag_index), "top_k": config.rag_top_k,
                        "max_context_chars": config.max_context_chars, "grounding": asdict(Grounding())}
            rows.append(ExamineeSpec(spec.label, spec.model, spec.adapter, candidate=spec.label, mode="open",
                                     rag_index=spec.rag_index, settings=json.dumps(settings, sort_keys=True)))
        else:
            rows.append(ExamineeSpec(spec.label, spec.model, spec.adapter, candidate=spec.label, mode="closed"))
    models: dict[tuple[str, str | None], str] = {}
    for spec in candidates:
        models.setdefault((spec.model, spec.adapter), _weights_label(spec, candidates, config.model))
    if config.gold_passage:
        settings = json.dumps({"docs": gold_digest, "max_context_chars": config.max_context_chars}, sort_keys=True)
        rows += [ExamineeSpec(f"{label}+gold", model, adapter, candidate=label, mode="gold", settings=settings)
                 for (model, adapter), label in models.items()]
    if config.options_only:
        rows += [ExamineeSpec(f"{label}+options", model, adapter, candidate=label, mode="options")
                 for (model, adapter), label in models.items()]
    labels = [row.label for row in rows]
    duplicate = next((label for label in labels if labels.count(label) > 1), None)
    if duplicate:
        raise AmautaError(f"--candidates: two rows would both be named {duplicate!r}; name the candidates with "
                          "NAME=WHO")
    return rows


# --- prompts ------------------------------------------------------------------------------------------------

@dataclass
class Prompt:
    """What one item's model reads in one mode.

    messages: the chat messages (system, user). passages: citations of the passages given (open/gold).
    found: False when retrieval returned nothing relevant, or RAG's grounding check refused the passages
        (then `rag ask` answers without the model). gold_retrieved: whether a passage came from the item's
        source (open/gold), else None. hits: the passages given (for the value check of open answers).
    """

    messages: list[dict[str, str]]
    passages: list[str] = field(default_factory=list)
    found: bool = True
    gold_retrieved: bool | None = None
    hits: list[Hit] = field(default_factory=list)


def _from_source(hit: Hit, item: ExamItem) -> bool:
    return Path(hit.source).name == Path(item.source.file).name and hit.article == item.source.article


def build_prompt(examinee: Examinee, item: ExamItem, max_new_tokens: int) -> Prompt:
    """The messages `item` is asked with in the examinee's mode (the RAG layout for open and gold)."""
    if examinee.mode in ("closed", "options"):
        question = OPTIONS_ONLY_QUESTION if examinee.mode == "options" else item.question.strip()
        return Prompt([{"role": "system", "content": CLOSED_BOOK_SYSTEM}, {"role": "user", "content": question}])
    if examinee.mode == "gold":
        messages, hits = examinee.passages.messages_for(item, examinee.loaded, max_new_tokens)
    else:
        messages, hits = examinee.passages.build_messages(item.question, loaded=examinee.loaded,
                                                          max_new_tokens=max_new_tokens)
    return Prompt(messages, [h.citation() for h in hits], found=bool(hits),
                  gold_retrieved=any(_from_source(h, item) for h in hits), hits=hits)


def choice_text(loaded: Any, messages: list[dict[str, str]], prompt_format: str) -> tuple[str, Callable, str]:
    """(context, tokenizer call, separator before each option) for multiple choice in `prompt_format`.

    chat: the messages rendered with the model's template up to the assistant's turn (the template writes
    its own special tokens), then each option as the assistant's reply; plain: the user's text then
    "Respuesta:", and " OPTION" (lm-eval's layout).
    """
    tokenizer = loaded.tokenizer
    if prompt_format == "chat":
        from amauta.models.templates import apply_template

        context = apply_template(loaded, messages, add_generation_prompt=True)
        # What the template writes between its assistant cue and the reply (Llama 2: a space; ChatML: nothing).
        probe = "RESPUESTA"
        replied = apply_template(loaded, [*messages, {"role": "assistant", "content": probe}], add_generation_prompt=False)
        start = replied.find(probe, len(context)) if replied.startswith(context) else -1
        separator = replied[len(context):start] if start >= 0 else ""
        return context, lambda text: tokenizer(text, add_special_tokens=False), separator
    return messages[-1]["content"] + PLAIN_ANSWER_CUE, tokenizer, " "


def short_answer_text(output: str) -> str:
    """The answer as scored: the reply without its passage citations ("[1]", "[2, 3]")."""
    return _CITATION.sub("", output).strip()


# --- the runner task ------------------------------------------------------------------------------------------

class ExamTask:
    """The exam as a runner task: one row per item and per model-in-a-mode, multiple choice and short answer."""

    name = "exam"

    def __init__(self, items: list[ExamItem], *, prompt_format: str = "chat", short_answer: bool = True,
                 max_new_tokens: int = 64, seed: int = 0, source: str = "", digest: str = "", endpoint: Any = None):
        """endpoint: an `EndpointGenerator` that writes the short answers (None: the loaded model does)."""
        self.endpoint = endpoint
        self.exam_items = items
        self._by_id = {item.id: item for item in items}
        self.prompt_format, self.short_answer = prompt_format, short_answer
        self.max_new_tokens, self.seed, self.source, self.digest = max_new_tokens, seed, source, digest

    def config_key(self) -> dict[str, Any]:
        # The whole exam file's hash (not the chosen items'): --limit and --split reuse what is cached, an
        # edited exam is scored again.
        key = {"exam": self.digest, "source": self.source,
               "prompt_format": self.prompt_format, "closed_book_system": CLOSED_BOOK_SYSTEM,
               "rag_system": RAG_SYSTEM_PROMPT,
               "options_only_question": OPTIONS_ONLY_QUESTION, "short_answer": self.short_answer,
               "open_book_refusal": "abstain",  # a refused retrieval picks the abstention option (see _choose)
               "max_new_tokens": self.max_new_tokens if self.short_answer else None}
        if self.endpoint is not None and self.short_answer:  # a served model's answers are cached apart
            key["short_answers_from"] = "endpoint"
        return key

    def items(self) -> list[dict[str, Any]]:
        return [{"id": item.id, "question": item.question, "options": item.options} for item in self.exam_items]

    @staticmethod
    def length(item: dict) -> int:
        """Rough size of the item's prompt, so that the runner batches items of similar length."""
        return len(item["question"]) + sum(len(o) for o in item["options"])

    def evaluate(self, examinee: Examinee, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items = [self._by_id[row["id"]] for row in batch]
        prompts = [build_prompt(examinee, item, self.max_new_tokens) for item in items]
        rows = self._choose(examinee, items, prompts)
        if self.short_answer and examinee.mode != "options":
            for row, answer in zip(rows, self._answer(examinee, items, prompts), strict=True):
                row.update(answer)
        for item, prompt, row in zip(items, prompts, rows, strict=True):
            if examinee.mode in ("open", "gold"):
                row.update(passages=prompt.passages, found=prompt.found, gold_retrieved=prompt.gold_retrieved)
            self._score_answer(item, row)
        return rows

    def _choose(self, examinee: Examinee, items: list[ExamItem], prompts: list[Prompt]) -> list[dict[str, Any]]:
        """Multiple choice by log-likelihood: every option after the context, packed in one row per item.

        Open book, an item whose passages retrieval or RAG's grounding check refused gets the abstention
        option without asking the model: that is what the RAG system answers a user (`rag ask` replies that
        the documents do not say), so its multiple-choice score measures the same system as its short answers.
        """
        gated = [examinee.mode == "open" and not prompt.found and item.abstain_index is not None
                 for item, prompt in zip(items, prompts, strict=True)]
        asked = [i for i, g in enumerate(gated) if not g]
        scored = dict(zip(asked, self._score_options(examinee, [items[i] for i in asked], [prompts[i] for i in asked]),
                          strict=True))
        rows = []
        for i, item in enumerate(items):
            row = {"fact_id": item.fact_id, "split": item.split, "group": item.group, "kind": item.kind,
                   "answerable": item.answerable, "mode": examinee.mode, "question": item.question,
                   "gold": item.gold, "gold_option": item.gold_option, "abstain_option": item.abstain_index}
            if gated[i]:
                pred = pred_norm = item.abstain_index
                row["gated"] = True
            else:
                row.update(scored[i])
                pred, pred_norm = row["pred"], row["pred_norm"]
            row.update(pred=pred, pred_option=item.options[pred], pred_norm=pred_norm, correct=pred == item.gold,
                       correct_norm=pred_norm == item.gold)
            rows.append(row)
        return rows

    def _score_options(self, examinee: Examinee, items: list[ExamItem], prompts: list[Prompt]) -> list[dict[str, Any]]:
        """Each item's option log-likelihoods and the model's picks (plain and length-normalised)."""
        from amauta.evaluate.loglik import encode_pair, score_continuations

        if not items:
            return []
        loaded = examinee.loaded
        limit = getattr(getattr(loaded.model, "config", None), "max_position_embeddings", None)
        contexts, continuations = [], []
        for item, prompt in zip(items, prompts, strict=True):
            context, tokenize, separator = choice_text(loaded, prompt.messages, self.prompt_format)
            pairs = [encode_pair(tokenize, context, separator + option) for option in item.options]
            ctx, longest = pairs[0][0], max(len(c) for _, c in pairs)
            if limit and len(ctx) + longest > limit + 1:  # keep the end of the context, like lm-eval
                ctx = ctx[-(limit + 1 - longest):]
            contexts.append(ctx)
            continuations.append([cont for _, cont in pairs])
        scored = score_continuations(loaded.model, loaded.tokenizer, contexts, continuations, prefix=examinee.prefix)
        picks = []
        for item, context, per_option in zip(items, contexts, scored, strict=True):
            logp = [s for s, _, _ in per_option]
            norm = [s / max(len(option), 1) for s, option in zip(logp, item.options, strict=True)]
            picks.append({"pred": max(range(len(logp)), key=lambda k: logp[k]),
                          "pred_norm": max(range(len(norm)), key=lambda k: norm[k]),
                          "logprobs": [round(x, 5) for x in logp], "tokens": [n for _, n, _ in per_option],
                          "context_tokens": len(context)})
        return picks

    def _answer(self, examinee: Examinee, items: list[ExamItem], prompts: list[Prompt]) -> list[dict[str, Any]]:
        """Short answers by greedy generation; with nothing retrieved, `rag ask`'s reply without the model.

        Open book, the answer then goes through `rag ask`'s value check: one stating a number or date that no
        passage it cites gives becomes its "the documents do not say" reply (the model's text kept as
        `withheld`)."""
        from amauta.evaluate.generation import generate_texts

        asked = [i for i, prompt in enumerate(prompts) if prompt.found]
        conversations = [prompts[i].messages for i in asked]
        if self.endpoint is not None:
            outputs = self.endpoint.generate(examinee.endpoint_model, conversations, self.max_new_tokens)
        else:
            outputs = generate_texts(examinee.loaded, conversations, self.max_new_tokens) if asked else []
        replies = dict(zip(asked, outputs, strict=True))
        rows = [{"output": replies.get(i, NOT_FOUND).strip()} for i in range(len(prompts))]
        if examinee.mode == "open":
            for i in asked:
                reply = examinee.passages.check_answer(items[i].question, rows[i]["output"], prompts[i].hits)
                if not reply.found:
                    rows[i] = {"output": reply.text, "withheld": rows[i]["output"]}
        return rows

    @staticmethod
    def _score_answer(item: ExamItem, row: dict[str, Any]) -> None:
        if "output" not in row:
            return
        score = item.score_answer(short_answer_text(row["output"]))
        row.update(sa_recall=round(score.recall, 4), sa_precision=round(score.precision, 4), sa_correct=score.correct,
                   sa_abstained=score.abstained, sa_matched=score.matched, sa_missing=score.missing,
                   sa_wrong=score.wrong)

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return exam_metrics(rows, seed=self.seed)


def score_multiple_choice(loaded: Any, items: list[ExamItem], *, prompt_format: str = "chat",
                          batch_size: int = 8) -> dict[str, Any]:
    """Closed-book multiple choice of an already loaded model on `items`, no files written: the exam's
    metrics (`exam_metrics`: acc, acc_norm, by slice). Training's early stopping scores its weights in
    memory with it, exactly as `amauta eval exam` would score the saved run."""
    task = ExamTask(items, prompt_format=prompt_format, short_answer=False)
    examinee = Examinee(loaded, "closed")
    rows: list[dict[str, Any]] = []
    for start in range(0, len(items), batch_size):
        rows += task.evaluate(examinee, [{"id": item.id} for item in items[start:start + batch_size]])
    return exam_metrics(rows)


# --- metrics --------------------------------------------------------------------------------------------------

SLICES: dict[str, Callable[[dict], bool]] = {
    "answerable": lambda r: r["answerable"],
    "qa": lambda r: r["answerable"] and r["kind"] == "fact" and r["group"] == "qa",
    "document_only": lambda r: r["answerable"] and r["kind"] == "fact" and r["group"] == "document_only",
    "worked_example": lambda r: r["answerable"] and r["kind"] == "worked_example",
    "unanswerable": lambda r: not r["answerable"],
}


def _interval(values: list[float], facts: list[str], seed: int) -> list[float] | None:
    low, high = stats.clustered_bootstrap_ci(values, facts, seed=seed)
    return None if math.isnan(low) else [low, high]


def _put(metrics: dict[str, Any], name: str, rows: list[dict], value: Callable[[dict], float], seed: int,
         with_ci: bool = True) -> None:
    """metrics[name] = the mean of `value` over `rows` (None when there are none), and its fact interval."""
    values = [float(value(r)) for r in rows]
    metrics[name] = sum(values) / len(values) if values else None
    if with_ci:
        metrics[f"{name}_ci"] = _interval(values, [r["fact_id"] for r in rows], seed) if values else None


def exam_metrics(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """One row's metrics: multiple-choice accuracy overall and by slice (QA facts, document-only facts,
    worked examples, unanswerable items), abstention and wrong answers, short-answer recall and precision.

    Every `_ci` is a 95% bootstrap over facts (None with fewer than `stats.MIN_CI_N` facts).
    """
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    metrics: dict[str, Any] = {"n": len(rows), "facts": len({r["fact_id"] for r in rows})}
    _put(metrics, "acc", rows, lambda r: r["correct"], seed)
    _put(metrics, "acc_norm", rows, lambda r: r["correct_norm"], seed)
    for name, chosen in SLICES.items():
        part = [r for r in rows if chosen(r)]
        _put(metrics, f"acc_{name}", part, lambda r: r["correct"], seed)
        metrics[f"n_{name}"] = len(part)
        metrics[f"facts_{name}"] = len({r["fact_id"] for r in part})
    # Multiple choice: the abstention option on unanswerable items (= their accuracy), and on answerable ones.
    _put(metrics, "abstain_unanswerable", unanswerable, lambda r: r["pred"] == r["abstain_option"], seed)
    _put(metrics, "abstain_answerable", answerable, lambda r: r["pred"] == r["abstain_option"], seed)
    _put(metrics, "wrong_answerable", answerable,
         lambda r: r["pred"] not in (r["gold"], r["abstain_option"]), seed)
    if rows and all("sa_correct" in r for r in rows):
        _put(metrics, "sa_recall", answerable, lambda r: r["sa_recall"], seed)
        _put(metrics, "sa_precision", answerable, lambda r: r["sa_precision"], seed)
        _put(metrics, "sa_correct", answerable, lambda r: r["sa_correct"], seed)
        for name in ("qa", "document_only", "worked_example"):
            _put(metrics, f"sa_correct_{name}", [r for r in rows if SLICES[name](r)], lambda r: r["sa_correct"],
                 seed, with_ci=False)
        _put(metrics, "sa_abstain_unanswerable", unanswerable, lambda r: r["sa_abstained"], seed)
        _put(metrics, "sa_abstain_answerable", answerable, lambda r: r["sa_abstained"], seed)
        _put(metrics, "sa_wrong_answerable", answerable, lambda r: not r["sa_abstained"] and not r["sa_correct"],
             seed)
    if rows and all("found" in r for r in rows):
        metrics["not_found"] = sum(1 for r in rows if not r["found"])
        _put(metrics, "gold_retrieved", answerable, lambda r: bool(r["gold_retrieved"]), seed, with_ci=False)
        metrics["passages_mean"] = sum(len(r["passages"]) for r in rows) / len(rows)
    return metrics


def paired_comparisons(rows_by_label: dict[str, list[dict[str, Any]]], reference: str, labels: list[str],
                       seed: int = 0) -> list[dict[str, Any]]:
    """Each row of `labels` against `reference`, item by item: flips, McNemar's p, and the accuracy delta
    with a 95% interval over facts (and the short-answer delta when both have short answers)."""
    base = {r["item_id"]: r for r in rows_by_label[reference]}
    comparisons = []
    for label in labels:
        other = {r["item_id"]: r for r in rows_by_label[label]}
        shared = [i for i in base if i in other]
        flips = stats.paired_flips({i: bool(base[i]["correct"]) for i in shared},
                                   {i: bool(other[i]["correct"]) for i in shared})
        facts = [base[i]["fact_id"] for i in shared]
        diffs = [float(other[i]["correct"]) - float(base[i]["correct"]) for i in shared]
        comparison = {"base": reference, "other": label, **flips, "facts": len(set(facts)),
                      "delta_ci": _interval(diffs, facts, seed)}
        if all("sa_correct" in base[i] and "sa_correct" in other[i] for i in shared) and shared:
            sa = [float(other[i]["sa_correct"]) - float(base[i]["sa_correct"]) for i in shared]
            comparison["delta_sa_correct"] = sum(sa) / len(sa)
            comparison["delta_sa_correct_ci"] = _interval(sa, facts, seed)
        comparisons.append(comparison)
    return comparisons


# --- the terminal table and the report section ---------------------------------------------------------------

def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _ci(ci: Any) -> str:
    return "–" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _pct_ci(value: Any, ci: Any, facts: int | None, signed: bool = False) -> str:
    """'45.0 [37.5, 52.5]', or '45.0 (n=4, sin intervalo)' over too few facts ('+5.0 ...' when signed)."""
    if value is None:
        return "–"
    shown = f"{100 * value:+.1f}" if signed else _pct(value)
    return f"{shown} {_ci(ci)}" if ci else f"{shown} {stats.interval_note(facts)}"


def _with_n(metrics: dict[str, Any], name: str) -> str:
    return "–" if metrics.get(f"acc_{name}") is None else f"{_pct(metrics[f'acc_{name}'])} ({metrics[f'n_{name}']})"


def table_rows(summary: dict[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The exam's tables by title (Spanish headers): multiple choice, abstention and errors, and, when there
    are short answers, their key facts. One row per model in a mode."""
    flips = {c["other"]: c for c in summary.get("comparisons", [])}
    choice, errors, short = [], [], []
    has_short = any("sa_recall" in m["metrics"] for m in summary["models"])
    for model in summary["models"]:
        m, label = model["metrics"], model["label"]
        who = [label, MODE_NAMES.get(model.get("mode", ""), "")]
        c = flips.get(label)
        if c:
            delta = _pct_ci(c["delta"], c["delta_ci"], c.get("facts"), signed=True)
        else:
            delta = "(ref.)" if label == summary.get("reference") else ""
        choice.append([*who, str(m["n"]), _pct_ci(m["acc"], m.get("acc_ci"), m.get("facts")), _pct(m.get("acc_norm")),
                       _with_n(m, "qa"), _with_n(m, "document_only"), _with_n(m, "worked_example"), delta,
                       f"{c['lost']}/{c['gained']}" if c else ""])
        row = [*who, _pct(m.get("abstain_unanswerable")), _pct(m.get("abstain_answerable")),
               _pct(m.get("wrong_answerable"))]
        if has_short:
            row += [_pct(m.get("sa_abstain_unanswerable")), _pct(m.get("sa_abstain_answerable")),
                    _pct(m.get("sa_wrong_answerable"))]
        errors.append(row)
        if "sa_recall" in m:
            short.append([*who, _pct_ci(m["sa_recall"], m.get("sa_recall_ci"), m.get("facts_answerable")),
                          _pct_ci(m["sa_precision"], m.get("sa_precision_ci"), m.get("facts_answerable")), _pct(m["sa_correct"]),
                          _pct(m.get("gold_retrieved"))])
    tables = {
        "Opción múltiple (log-verosimilitud)": (
            ["Candidato", "Modo", "n", "acc % [IC 95 %]", "acc_norm %", "Hechos QA", "Solo documentos",
             "Ej. resueltos", "Δ vs ref. [IC 95 %]", "pierde/gana"], choice),
        "Abstención y errores (%)": (
            ["Candidato", "Modo", "OM: se abstiene sin resp.", "OM: se abstiene con resp.", "OM: yerra con resp."]
            + (["RC: se abstiene sin resp.", "RC: se abstiene con resp.", "RC: yerra con resp."] if has_short else []),
            errors),
    }
    if short:
        tables["Respuesta corta (datos clave, sin juez)"] = (
            ["Candidato", "Modo", "Recall % [IC 95 %]", "Precisión % [IC 95 %]", "Correctas %", "Fuente recuperada %"],
            short)
    return tables


def _notes(summary: dict[str, Any]) -> list[str]:
    exam = summary.get("exam", {})
    notes = [f"Examen {exam.get('path', '')}, parte {exam.get('split', '')}: {summary['n_items']} ítems, "
             f"{exam.get('counts', {}).get('facts', '?')} hechos con respuesta y "
             f"{exam.get('counts', {}).get('unanswerable_items', '?')} ítems sin respuesta en los documentos. "
             "Intervalos del 95 % por bootstrap sobre hechos (n = hechos; sin intervalo con menos de "
             f"{stats.MIN_CI_N}); Δ y pierde/gana contra {summary.get('reference', '')}. "
             "OM: opción múltiple; RC: respuesta corta; sin/con resp.: ítems sin/con respuesta en los documentos."]
    for adapter, state in summary.get("leak_check", {}).items():
        if state.startswith("not checked"):
            notes.append(f"Aviso: no se pudo comprobar si {adapter} se entrenó con preguntas del examen ({state}).")
    return notes


def print_exam_summary(summary: dict[str, Any], out_dir: str = "", console: Any = None) -> None:
    """Print the exam's tables (rich) and where the per-item results are."""
    from rich.table import Table

    from amauta.core.console import make_console

    console = console or make_console()
    for title, (headers, rows) in table_rows(summary).items():
        table = Table(title=title)
        for header in headers:
            table.add_column(header, justify="left" if header in ("Candidato", "Modo") else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for note in _notes(summary):
        console.print(note, highlight=False)
    if out_dir:
        console.print(f"per-item results: {out_dir}/{summary.get('items_file', 'items.jsonl')}", highlight=False)


def report_markdown(summary: dict[str, Any], heading_level: int = 3) -> str:
    """The exam's tables in Markdown, for `amauta report`."""
    from amauta.evaluate.compare import markdown_table

    hashes = "#" * heading_level
    parts = []
    for title, (headers, rows) in table_rows(summary).items():
        parts += [f"{hashes} {title}", markdown_table(headers, rows)]
    parts += _notes(summary)
    return "\n\n".join(parts)


def _weights_groups(models: list[dict[str, Any]]) -> dict[tuple[Any, Any], str]:
    """(model, adapter) → the name of its group of bars: the label of its closed-book row, else the
    candidate its gold/options rows name (the weights' label), else its first row's label."""
    groups: dict[tuple[Any, Any], str] = {}
    for preferred in ("closed", "gold", "options", "open"):
        for m in models:
            weights = (m.get("model"), m.get("adapter"))
            if m.get("mode") == preferred and weights not in groups:
                groups[weights] = m["label"] if preferred in ("closed", "open") else m.get("candidate", m["label"])
    return groups


def mode_charts(summary: dict[str, Any]) -> list[Chart]:
    """Multiple-choice accuracy of each model closed book and open book (RAG, with the source), and with the
    question withheld, with 95% intervals over facts, as grouped bars for `amauta report`: one group per
    model (its weights), one bar per mode."""
    models = [m for m in summary.get("models", []) if m.get("mode") in MODE_NAMES]
    if not models:
        return []
    groups = _weights_groups(models)
    indexes = list(dict.fromkeys(m.get("rag_index") for m in models if m.get("mode") == "open"))

    def series_name(m: dict[str, Any]) -> str:
        if m["mode"] == "open" and len(indexes) > 1:
            return f"{MODE_NAMES['open']} ({m.get('rag_index')})"
        return MODE_NAMES[m["mode"]]

    names = list(dict.fromkeys(series_name(m) for m in sorted(models, key=lambda m: list(MODE_NAMES).index(m["mode"]))))
    labels = list(dict.fromkeys(groups.values()))
    series = {name: [math.nan] * len(labels) for name in names}
    errors: dict[str, list[tuple[float, float] | None]] = {name: [None] * len(labels) for name in names}
    for m in models:
        slot = labels.index(groups[(m.get("model"), m.get("adapter"))])
        name = series_name(m)
        if not math.isnan(series[name][slot]):  # two candidates with the same weights in one mode: a group each
            labels.append(m["label"])
            for key in series:
                series[key].append(math.nan)
                errors[key].append(None)
            slot = len(labels) - 1
        acc, ci = m["metrics"].get("acc"), m["metrics"].get("acc_ci")
        series[name][slot] = math.nan if acc is None else 100 * acc
        errors[name][slot] = (100 * ci[0], 100 * ci[1]) if ci else None
    return [Chart("modes", labels, series, "Acierto de opción múltiple: libro cerrado y libro abierto", "%",
                  "Multiple-choice accuracy of each model closed book, open book (RAG, with the source) and with "
                  "the question withheld, with 95% bootstrap intervals over facts", errors=errors)]


register_section("exam", ReportSection(title="Examen sobre los documentos", markdown=report_markdown,
                                       charts=mode_charts))


# --- lm-evaluation-harness export -----------------------------------------------------------------------------

def export_lm_eval(config: ExamConfig) -> list[Path]:
    """Write the exam's split as lm-evaluation-harness multiple-choice tasks (YAML + JSONL); returns the files.

    One task asks the question alone (closed-book); with `gold_passage`, another adds the item's source
    chunk in the RAG layout. Both use the plain layout (`QUESTION\\nRespuesta: OPTION`), which Amauta
    scores with `--prompt-format plain`. Files already there are kept when identical and refused otherwise.
    """
    import yaml

    from amauta.rag.answer import format_passages

    items = _exam_items(config)
    folder = Path(config.export_lm_eval or "")
    stem = re.sub(r"\W+", "_", Path(config.exam).stem).strip("_").lower() or "exam"
    base = f"amauta_exam_{stem}_{config.split}"
    records = [{"id": it.id, "fact_id": it.fact_id, "group": it.group, "kind": it.kind, "answerable": it.answerable,
                "question": it.question.strip(), "options": it.options, "gold": it.gold} for it in items]
    modes = {"closed": ("{{question}}" + PLAIN_ANSWER_CUE, None)}
    if config.gold_passage:
        chunks = source_chunks(config.docs or default_docs(config.exam), items)
        passages = [format_passages([_as_hit(c) for c in chunks[(it.source.file, it.source.article)]],
                                    config.max_context_chars) for it in items]
        modes["gold"] = ("Fragmentos de los documentos:\n\n{{passages}}\n\nPregunta: {{question}}" + PLAIN_ANSWER_CUE,
                         passages)
    files: dict[Path, str] = {}
    for mode, (doc_to_text, passages) in modes.items():
        name = f"{base}_{mode}"
        data = folder / f"{name}.jsonl"
        rows = records if passages is None else [{**r, "passages": p} for r, p in zip(records, passages, strict=True)]
        files[data] = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        task = {"task": name, "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(data.resolve())}}, "test_split": "test",
                "output_type": "multiple_choice", "doc_to_text": doc_to_text, "doc_to_choice": "{{options}}",
                "doc_to_target": "{{gold}}", "target_delimiter": " ",
                "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
                "metadata": {"version": 1.0, "exam": str(config.exam), "split": config.split, "mode": mode}}
        files[folder / f"{name}.yaml"] = yaml.safe_dump(task, allow_unicode=True, sort_keys=False)
    for path, text in files.items():
        if path.exists() and path.read_text(encoding="utf-8") != text:
            raise AmautaError(f"{path}: already exists with other content; export into an empty folder "
                              "(--export-lm-eval) or move that file away")
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        if not path.exists():
            atomic_write_text(path, text)
    return list(files)


# --- the stage ------------------------------------------------------------------------------------------------

def _exam_items(config: ExamConfig) -> list[ExamItem]:
    items = read_exam(config.exam, config.split)
    return items[: config.limit] if config.limit else items


def run(config: ExamConfig, *, loader: Callable[..., Any] | None = None, show_progress: bool = True,
        generate_api_key: str | None = None) -> Path:
    """Pipeline entry point: every candidate takes the exam into `config.out`; returns that folder.

    loader: `loader(spec, **load_kwargs) -> LoadedModel` in place of `load_model` (tests).
    generate_api_key: the key of `config.generate_base_url` (never written; else the LLM role's rule).
    """
    from amauta.evaluate.runner import default_loader

    items = _exam_items(config)
    candidates = parse_candidates(config.candidates, config.model, default_strategy="greedy")
    for spec in candidates:
        if spec.strategy != "greedy":
            raise AmautaError(f"candidate {spec.label!r}: the exam decodes greedily, so that a score does not depend "
                              f"on a draw; drop '@{spec.strategy}'")
    leak_check = check_leaks(candidates, config.exam)
    gold = None
    if config.gold_passage:
        docs = config.docs or default_docs(config.exam)
        gold = GoldPassages(source_chunks(docs, items), config.max_context_chars)
    rows = build_rows(config, candidates, chunks_digest(gold.chunks) if gold else None)
    endpoint, names = short_answer_endpoint(config, candidates, generate_api_key)
    generation = {"multiple_choice": "in-process", "short_answers": "in-process" if config.short_answer else None}
    if endpoint is not None:
        generation.update(short_answers="endpoint", endpoint=endpoint.base_url,
                          models={row.label: names[(row.model, row.adapter)] for row in rows if row.mode != "options"})
    task = ExamTask(items, prompt_format=config.prompt_format, short_answer=config.short_answer,
                    max_new_tokens=config.max_new_tokens, seed=config.seed, source=Path(config.exam).name,
                    digest=sha256_file(config.exam)[:16], endpoint=endpoint)
    exam_loader = _ExamLoader(loader or default_loader, gold, config.rag_top_k, config.max_context_chars, names)

    def complete(summary: dict[str, Any], rows_by_model: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        done = complete_summary(summary, rows_by_model, config=config, rows=rows, items=items, leak_check=leak_check)
        return {**done, "generation": generation}

    try:
        return run_eval(task, rows, config.out, batch_size=config.batch_size, loader=exam_loader,
                        load_kwargs=config.load_kwargs(), config=config, inputs=[config.exam],
                        show_progress=show_progress, complete_summary=complete).folder
    finally:
        exam_loader.release()


def short_answer_endpoint(config: ExamConfig, candidates: list[CandidateSpec], api_key: str | None = None
                          ) -> tuple[Any, dict[tuple[str, str | None], str]]:
    """(the `EndpointGenerator` that writes the short answers, (model, adapter) → its name there), or (None, {})
    when the loaded models write them. A down endpoint or a model it does not serve stops here in one line,
    before any model is loaded."""
    if not (config.generate_base_url and config.short_answer):
        return None, {}
    from amauta.evaluate.generation import EndpointGenerator, endpoint_names

    endpoint = EndpointGenerator(config.generate_base_url, config.generate_model, api_key=api_key,
                                 timeout=config.generate_timeout, workers=config.generate_workers)
    names = endpoint_names(candidates, config.model, endpoint.base_model)
    endpoint.check_served(names.values())
    return endpoint, names


def complete_summary(summary: dict[str, Any], rows_by_model: dict[str, list[dict[str, Any]]], *, config: ExamConfig,
                     rows: list[ExamineeSpec], items: list[ExamItem], leak_check: dict[str, str]) -> dict[str, Any]:
    """The runner's summary with the exam's own parts: each row's candidate and mode, the reference, the
    comparisons with intervals over facts (options-only rows left out), the exam's counts, the leak check."""
    by_label = {row.label: row for row in rows}
    for model in summary["models"]:
        spec = by_label[model["label"]]
        model.update(candidate=spec.candidate, mode=spec.mode, rag_index=spec.rag_index)
    reference = rows[0].label
    compared = [row.label for row in rows[1:] if row.mode != "options"]
    return {**summary, "reference": reference,
            "comparisons": paired_comparisons(rows_by_model, reference, compared, seed=config.seed),
            "exam": {"path": str(config.exam), "split": config.split, "counts": exam_counts(items)},
            "leak_check": leak_check}
