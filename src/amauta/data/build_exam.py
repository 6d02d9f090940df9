"""Build a document exam (`amauta data build-exam`): an LLM writes exam items from each chunk of the documents.

The exam measures whether a model learned what the documents say (docs/evaluate.md, "The document exam").
This stage writes its first draft, which a person then checks with `amauta data review`:

1. read the documents and cut them along their articles (`amauta.documents`, as `build-qa` and `rag index`);
2. for each chunk, ask the configured model (local, or any OpenAI-compatible endpoint, through `amauta.llm`)
   with a fixed Spanish prompt for JSON: facts the chunk states, each asked in several wordings, with its
   right answer, plausible wrong answers of the same kind (12 % vs 15 %, day 14 vs day 16), a reference
   answer and the key facts a correct answer must contain; and questions on the same topic whose answer
   the chunk does not give (unanswerable items, gold "Los documentos no lo indican");
3. turn every reply into exam items: a `fact_id` per fact, the options shuffled with a seed, and the
   wordings of each fact spread over the splits (one `dev`, up to three `test`, the rest `train`); a
   seeded share of the facts is kept *document-only* (`group: document_only`, no `train` wordings: their
   would-be train wordings go to `test`), the rest are QA facts (`group: qa`);
4. validate every item with `amauta.data.exam_items` (a reply with broken items is sent back to the model
   with the reason; the file is checked whole before it is written, atomically) and write provenance on
   every item: `source: {file, article}`, page, chunk id and text, model, prompt version and prompt hash.

Replies are cached by chunk text, prompt, model and generation settings (as `build-qa` does), so a rerun
resumes after a crash and an unchanged chunk is never asked twice of the same model. The output file is
one this stage made (its manifest says so) or a new path: a file it did not write, or one edited by hand
since, is refused rather than overwritten.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from amauta.core.errors import AmautaError
from amauta.core.files import (
    atomic_write_json,
    atomic_write_text,
    sha256_file,
)
from amauta.data.answer_match import normalize
from amauta.data.asking import (
    ChunkAnswers,
    ChunkAskingConfig,
    answer_chunks,
    failed_chunks,
    model_identity,
    read_chunks,
    reply_key,
    sidecar,
    write_failures,
)
from amauta.data.build_qa import _norm
from amauta.data.exam_items import (
    ABSTAIN_OPTION,
    MAX_OPTIONS,
    ExamItem,
    check_items,
    exam_counts,
    exam_design_problems,
    parse_item,
)
from amauta.llm.client import LLM

PROMPT_VERSION = "exam-es-v1"
STAGE = "data.build_exam"

SYSTEM_PROMPT = (
    "Eres un docente que prepara exámenes sobre documentos normativos de Ecuador. Escribes en español claro. "
    "Cada pregunta se responde con un dato concreto del texto (un número, un porcentaje, una fecha, un plazo, "
    "un nombre), y las opciones incorrectas son del mismo tipo, verosímiles, pero falsas según el texto."
)

USER_PROMPT = """A partir del siguiente fragmento, escribe un examen.

1. "facts": {n_facts} datos concretos que el fragmento afirma. Para cada dato:
   - "questions": {n_questions} preguntas distintas que pidan ese mismo dato con otras palabras \
(una puede plantear una situación cotidiana);
   - "answer": la respuesta correcta, breve (por ejemplo "15%", "USD 20.000", "el 28 de marzo");
   - "distractors": 3 respuestas incorrectas del mismo tipo y verosímiles (otro porcentaje, otro monto, \
otra fecha), que el fragmento no respalde;
   - "reference": una oración completa que responda correctamente;
   - "key_facts": los números, fechas o nombres que una respuesta correcta debe contener.
2. "unanswerable": {n_unanswerable} preguntas sobre el mismo tema cuya respuesta NO está en el fragmento \
(por ejemplo, una multa, un plazo o un monto que el texto no menciona). Para cada una:
   - "questions": {n_questions} formas distintas de hacer esa pregunta;
   - "distractors": 3 respuestas verosímiles pero inventadas.

No inventes datos como si el fragmento los dijera. Responde solo con un objeto JSON, sin texto adicional, \
con este formato exacto:
{{"facts": [{{"questions": ["..."], "answer": "...", "distractors": ["...", "...", "..."], \
"reference": "...", "key_facts": ["..."]}}],
 "unanswerable": [{{"questions": ["..."], "distractors": ["...", "...", "..."]}}]}}

Fuente: {source}{article}
Fragmento:
\"\"\"
{text}
\"\"\""""

PROMPT_HASH = hashlib.sha256(f"{PROMPT_VERSION}\x00{SYSTEM_PROMPT}\x00{USER_PROMPT}".encode()).hexdigest()[:16]


class BuildExamConfig(ChunkAskingConfig):
    """Config of `amauta data build-exam` (and the pipeline step `data.build_exam`); the model, asking and
    chunking keys are `ChunkAskingConfig`'s."""

    out: str = Field("exam.jsonl", description="Output exam JSONL; failures and manifest are written beside it.")
    facts_per_chunk: int = Field(2, ge=1, le=10, description="Facts asked for each chunk.")
    questions_per_fact: int = Field(6, ge=1, le=12, description="Wordings asked for each fact (1 dev, 3 test, "
                                    "the rest train).")
    unanswerable_per_chunk: int = Field(1, ge=0, le=10, description="Unanswerable questions asked for each chunk.")
    min_unanswerable_share: float = Field(0.15, ge=0, le=1, description="Warn when unanswerable items are a "
                                          "smaller share of the exam.")
    document_only_share: float = Field(0.5, ge=0, le=1, description="Share of the facts kept document-only "
                                       "(no train wordings), chosen with the seed.")
    seed: int = Field(0, description="Seed of the option order and of the document-only facts.")
    max_tokens: int = Field(2048, ge=16, description="Longest reply asked from the model.")
    cache: str | None = Field(None, description="Cache JSONL (default: $AMAUTA_HOME/build-exam/cache.jsonl).")


def build_messages(chunk: Any, config: BuildExamConfig) -> list[dict[str, str]]:
    """The Spanish prompt for one chunk (system + user)."""
    article = f", {chunk.article}" if chunk.article else ""
    if chunk.heading:
        article += f" ({chunk.heading})"
    user = USER_PROMPT.format(n_facts=config.facts_per_chunk, n_questions=config.questions_per_fact,
                              n_unanswerable=config.unanswerable_per_chunk, source=Path(chunk.source).name,
                              article=article, text=chunk.text)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def cache_key(messages: list[dict], llm: LLM, config: BuildExamConfig) -> str:
    """Hash of what decides the reply: prompt (chunk text included), the model that answers, the settings."""
    return reply_key(PROMPT_VERSION, model_identity(llm), messages, config.max_tokens, config.temperature)


# --- the model's reply ----------------------------------------------------------------------------------------

def _texts(value: Any) -> list[str]:
    """The non-empty strings of a list (a single string counts as a list of one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if isinstance(v, (str, int, float)) and str(v).strip()]


def _unique(texts: list[str]) -> list[str]:
    seen, kept = set(), []
    for text in texts:
        key = _norm(text)
        if key and key not in seen:
            seen.add(key)
            kept.append(text)
    return kept


def _probe(fact: dict[str, Any], answerable: bool) -> None:
    """Check one fact as an exam item would be checked (ValueError naming what is wrong)."""
    options, gold = _options(fact, answerable, random.Random(0))
    draft = {"id": "probe", "fact_id": "probe", "split": "test", "answerable": answerable,
             "source": {"file": "probe"}, "question": fact["questions"][0], "options": options, "gold": gold,
             "reference": fact["reference"], "key_facts": fact["key_facts"],
             "distractor_facts": fact["distractors"]}
    try:
        parse_item(draft, "item")
    except AmautaError as exc:
        raise ValueError(str(exc).removeprefix("item: item 'probe' ")) from None


def validate_reply(value: Any, config: BuildExamConfig) -> dict[str, list[dict[str, Any]]]:
    """Normalise a reply to {"facts": [...], "unanswerable": [...]}; facts that would make bad exam items are
    dropped. ValueError (sent back to the model) when no usable fact is left."""
    if isinstance(value, list):  # a bare list of facts
        value = {"facts": value}
    if not isinstance(value, dict):
        raise ValueError(f'se esperaba un objeto JSON con "facts" y "unanswerable", llegó {type(value).__name__}')
    reasons: list[str] = []
    facts = [f for f in (_fact(raw, True, reasons) for raw in _list(value, "facts", "hechos")) if f]
    unanswerable = [f for f in (_fact(raw, False, reasons) for raw in _list(value, "unanswerable", "sin_respuesta")) if f]
    if not facts:
        why = f" ({reasons[0]})" if reasons else ""
        raise ValueError('ningún elemento de "facts" tiene preguntas, una respuesta, distractores del mismo tipo y '
                         f"datos clave válidos{why}")
    return {"facts": facts[:config.facts_per_chunk], "unanswerable": unanswerable[:config.unanswerable_per_chunk]}


def _list(value: dict[str, Any], *names: str) -> list[Any]:
    for name in names:
        if isinstance(value.get(name), list):
            return value[name]
    return []


def _fact(raw: Any, answerable: bool, reasons: list[str]) -> dict[str, Any] | None:
    """One fact of the reply in normal form, or None (with the reason appended) when it is unusable."""
    if not isinstance(raw, dict):
        return None
    questions = _unique(_texts(raw.get("questions") or raw.get("preguntas") or raw.get("question")))
    answer = " ".join(_texts(raw.get("answer") or raw.get("respuesta")))
    distractors = _texts(raw.get("distractors") or raw.get("distractores"))
    # Distractors that say the answer (or abstain) in other words would be two right options: dropped.
    taken = {normalize(answer), normalize(ABSTAIN_OPTION)}
    distractors = [d for d in distractors if not (normalize(d) in taken or taken.add(normalize(d)))]
    distractors = distractors[:MAX_OPTIONS - 2]
    if not questions:
        reasons.append("un elemento no tiene preguntas")
        return None
    if not distractors:
        reasons.append(f"{questions[0]!r} no tiene distractores distintos de la respuesta")
        return None
    if answerable:
        fact = {"questions": questions, "answer": answer, "distractors": distractors,
                "reference": " ".join(_texts(raw.get("reference") or raw.get("referencia"))) or answer,
                "key_facts": _texts(raw.get("key_facts") or raw.get("datos_clave")) or ([answer] if answer else [])}
    else:
        fact = {"questions": questions, "answer": ABSTAIN_OPTION, "distractors": distractors,
                "reference": ABSTAIN_OPTION, "key_facts": []}
    if answerable and not answer:
        reasons.append(f"el dato de {questions[0]!r} no tiene respuesta")
        return None
    try:
        _probe(fact, answerable)
    except ValueError as exc:
        reasons.append(str(exc))
        return None
    return fact


# --- from replies to exam items ---------------------------------------------------------------------------

def _options(fact: dict[str, Any], answerable: bool, rng: random.Random) -> tuple[list[str], int]:
    """The options (right answer and distractors shuffled, the abstention option last) and the gold index."""
    options = ([fact["answer"]] if answerable else []) + list(fact["distractors"])
    rng.shuffle(options)
    options.append(ABSTAIN_OPTION)
    return options, options.index(fact["answer"]) if answerable else len(options) - 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", _norm(text or "")).strip("-")


def assign_splits(n: int, document_only: bool, answerable: bool) -> list[str]:
    """The split of each of a fact's `n` wordings (already shuffled): one dev, up to three test, the rest train.

    Document-only facts and unanswerable questions have no train wordings (theirs go to test); a fact with
    one wording puts it in test.
    """
    if n == 1:
        return ["test"]
    splits = ["dev"] + ["test"] * min(3, n - 1)
    rest = n - len(splits)
    return splits + ["test" if (document_only or not answerable) else "train"] * rest


def fact_items(fact: dict[str, Any], *, fact_id: str, answerable: bool, document_only: bool, seed: int,
               provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """The exam items (JSON) of one fact: one per wording, options shuffled with a seed per fact."""
    rng = random.Random(f"{seed}:{fact_id}")
    questions = list(fact["questions"])
    rng.shuffle(questions)
    splits = assign_splits(len(questions), document_only, answerable)
    group = None if not answerable else ("document_only" if document_only else "qa")
    items = []
    counters: dict[str, int] = {}
    for question, split in zip(questions, splits, strict=True):
        counters[split] = counters.get(split, 0) + 1
        options, gold = _options(fact, answerable, rng)
        items.append({"id": f"{fact_id}.{split}.{counters[split]}", "fact_id": fact_id, "split": split,
                      "answerable": answerable, "source": provenance["source"], "question": question,
                      "options": options, "gold": gold, "reference": fact["reference"],
                      "key_facts": fact["key_facts"], "distractor_facts": fact["distractors"], "kind": "fact",
                      "group": group, **{k: v for k, v in provenance.items() if k != "source"}})
    return items


def _is_document_only(fact_id: str, share: float, seed: int) -> bool:
    """A seeded draw per fact, stable whatever other facts the exam holds."""
    return random.Random(f"{seed}:group:{fact_id}").random() < share


def build_items(chunks: list[Any], replies: list[dict[str, Any]], config: BuildExamConfig,
                model: str) -> tuple[list[dict[str, Any]], int]:
    """Every chunk's reply as exam items, in chunk order; returns (items, duplicate questions dropped)."""
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    duplicates = 0
    for chunk, reply in zip(chunks, replies, strict=True):
        base = "-".join(p for p in (_slug(Path(chunk.source).stem), _slug(chunk.article or "intro"), chunk.id[:6]) if p)
        provenance = {"source": {"file": Path(chunk.source).name, "article": chunk.article}, "page": chunk.page,
                      "chunk_id": chunk.id, "chunk_text": chunk.text, "model": model,
                      "prompt_version": PROMPT_VERSION, "prompt_hash": PROMPT_HASH}
        kinds = [(f, True) for f in reply["facts"]] + [(f, False) for f in reply["unanswerable"]]
        for number, (fact, answerable) in enumerate(kinds, start=1):
            fresh = [q for q in fact["questions"] if _norm(q) not in seen]
            duplicates += len(fact["questions"]) - len(fresh)
            if not fresh:
                continue
            seen.update(_norm(q) for q in fresh)
            fact_id = f"{base}-{'h' if answerable else 'sr'}{number}"
            document_only = answerable and _is_document_only(fact_id, config.document_only_share, config.seed)
            items += fact_items({**fact, "questions": fresh}, fact_id=fact_id, answerable=answerable,
                                document_only=document_only, seed=config.seed, provenance=provenance)
    return items, duplicates


# --- cache and output -----------------------------------------------------------------------------------------

def _check_output(out: Path) -> None:
    """Refuse to overwrite a file this stage did not write, or one edited since it wrote it."""
    if out.suffix.lower() != ".jsonl":
        raise AmautaError(f"{out}: the output must be a .jsonl file (e.g. --out exam.jsonl)")
    if not out.exists():
        return
    manifest_path = sidecar(out, "manifest.json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    except json.JSONDecodeError:
        manifest = {}
    if manifest.get("stage") != STAGE:
        raise AmautaError(f"{out}: already exists and build-exam did not write it (no {manifest_path.name} from "
                          "build-exam beside it); choose another --out or move the file away")
    # The manifest is written just before the file: a run killed in between leaves the previous file, whose
    # hash the manifest keeps too.
    if sha256_file(out) not in (manifest.get("output_sha256"), manifest.get("previous_output_sha256")):
        raise AmautaError(f"{out}: edited since build-exam wrote it; review it with `amauta data review {out}` "
                          "(edits go to the accepted file), or move it away to build it again")


def run(config: BuildExamConfig, *, llm: LLM | None = None, console: Any = None) -> Path:
    """Build the exam described by `config` and return its path.

    llm: use this client instead of building one from the config (tests, or a model already loaded).
    console: a rich Console for progress and the summary (default: stderr).
    """
    from rich.console import Console

    from amauta.core.manifest import package_versions

    console = console or Console(stderr=True)
    started = time.time()
    out = Path(config.out)
    _check_output(out)
    paths, chunks = read_chunks(config.docs, config.max_chars, config.overlap, config.min_chars)

    jobs = [(chunk, build_messages(chunk, config)) for chunk in chunks]
    asked = answer_chunks(config, "build-exam", jobs, key=lambda messages, llm: cache_key(messages, llm, config),
                          validate=lambda value: validate_reply(value, config), value_field="reply",
                          value_type=dict, prompt_version=PROMPT_VERSION, llm=llm, console=console)
    results = asked.results
    answered = [i for i in range(len(jobs)) if results[i]["status"] == "ok"]
    failures = failed_chunks(results)
    rows, duplicates = build_items([chunks[i] for i in answered], [results[i]["reply"] for i in answered],
                                   config, asked.llm.name)
    if not rows:
        raise AmautaError(f"build-exam: the model gave no usable item for any of {len(jobs)} chunks; see "
                          f"{asked.cache_path} (raw replies) and try a larger model or more --retries")
    items = check_items([parse_item(row, f"{out} (item {n})") for n, row in enumerate(rows, start=1)])
    text = "".join(json.dumps(item.to_json(), ensure_ascii=False, default=str) + "\n" for item in items)
    _write_sidecars(out, config, failures, items, paths, asked, package_versions(), {
        "documents": len(paths), "chunks": len(jobs), "asked": asked.asked, "from_cache": asked.from_cache,
        "failed": len(failures), "duplicate_questions_dropped": duplicates, "seconds": round(time.time() - started, 1)},
        output_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())
    atomic_write_text(out, text)  # every item checked above, one by one and together (as write_exam does)
    _say_summary(console, out, items, len(jobs), failures, config)
    return out


def _write_sidecars(out: Path, config: BuildExamConfig, failures: list[dict], items: list[ExamItem], paths: list[Path],
                    asked: ChunkAnswers, versions: dict, summary: dict, *, output_sha256: str) -> None:
    write_failures(out, failures)
    safe_config = config.model_dump(mode="json") | {"api_key": "***" if config.api_key else None}
    atomic_write_json(sidecar(out, "manifest.json"), {
        "stage": STAGE, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": safe_config,
        "model": asked.llm.name, "endpoint": asked.endpoint, "prompt_version": PROMPT_VERSION, "prompt_hash": PROMPT_HASH,
        "cache": str(asked.cache_path),
        "inputs": {str(p): sha256_file(p) for p in paths}, "output_sha256": output_sha256,
        "previous_output_sha256": sha256_file(out) if out.is_file() else None,
        "summary": {**summary, **exam_counts(items)}, "design_problems": exam_design_problems(items),
        "versions": versions})


def _say_summary(console: Any, out: Path, items: list[ExamItem], chunks: int, failures: list[dict],
                 config: BuildExamConfig) -> None:
    counts = exam_counts(items)
    console.print(f"build-exam: {counts['items']} items ({counts['facts']} facts, {counts['unanswerable_items']} "
                  f"unanswerable items, {counts['unanswerable_share']:.0%}) from {chunks} chunks → {out}; "
                  f"review them with `amauta data review {out}`", highlight=False)
    if counts["unanswerable_share"] < config.min_unanswerable_share:
        console.print(f"[yellow]unanswerable items are {counts['unanswerable_share']:.0%} of the exam, below "
                      f"{config.min_unanswerable_share:.0%}; rerun with a larger --unanswerable-per-chunk[/]",
                      highlight=False)
    if failures:
        console.print(f"[yellow]{len(failures)} chunks failed; see {sidecar(out, 'failures.jsonl')}; rerun the same "
                      "command to retry them[/]", highlight=False)
