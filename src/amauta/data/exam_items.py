"""The document exam's items: schema, reader, writer, design checks and the training-data leak check.

An exam is a JSONL file, one item per line (docs/evaluate.md, "The document exam"):

    {"id": "iva-tarifa-general.test.1", "fact_id": "iva-tarifa-general", "split": "test",
     "answerable": true, "source": {"file": "iva.md", "article": "Art. 2"},
     "question": "¿Qué porcentaje de IVA se cobra hoy sobre un bien gravado?",
     "options": ["12%", "15%", "10%", "30%", "Los documentos no lo indican"], "gold": 1,
     "reference": "La tarifa general del IVA es del 15%.", "key_facts": ["15%"],
     "distractor_facts": ["12%", "10%", "30%"], "kind": "fact", "group": "qa"}

Several items share a `fact_id`: the same fact asked in different words. Every item carries the option
"Los documentos no lo indican" (`ABSTAIN_OPTION`), the gold of unanswerable items (`answerable: false`:
questions on the documents' topics whose answer the documents do not give).

Which facts may be taught is a property of the fact, written on each of its items as `group`:

- "qa": a QA fact. Its `train` phrasings may appear as Q&A in training data; its `dev` and `test`
  phrasings never do (held-out wordings).
- "document_only": the fact appears in the documents and in no Q&A of any recipe, so it has no `train`
  items; a model that answers it learned it from the documents.
- null: not assigned (an exam written by `amauta data build-exam` before anyone split the facts);
  unanswerable facts in the shipped exam have no group either.

All items of one fact must agree on `answerable`, `kind`, `group` and `source.file`; the reader checks it.
`kind` is "fact" (a fact stated in the documents) or "worked_example" (the documents' rule applied to
numbers that are not in them: it tests arithmetic as well as the fact, and is reported apart).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from amauta.core.errors import AmautaError, did_you_mean
from amauta.core.files import atomic_write_jsonl, read_jsonl
from amauta.data.answer_match import AnswerScore, fold, normalize, score_answer

ABSTAIN_OPTION = "Los documentos no lo indican"
SPLITS = ("train", "dev", "test")
GROUPS = ("qa", "document_only")
KINDS = ("fact", "worked_example")
MIN_OPTIONS, MAX_OPTIONS = 2, 6

# What to write for each required field, quoted in the error that reports it missing.
_FIELD_HINTS = {
    "id": "a unique name such as 'iva-tarifa.test.1'",
    "fact_id": "the fact the question asks about; phrasings of one fact share it",
    "split": "train, dev or test",
    "answerable": "true, or false when the documents do not give the answer",
    "source": '{"file": "iva.md", "article": "Art. 2"}',
    "question": "the question text",
    "options": f"2-6 answers, one of them {ABSTAIN_OPTION!r}",
    "gold": "the 0-based index of the right option",
    "reference": "a full correct answer in words",
    "key_facts": "the numbers, dates or names a correct answer must contain; [] for unanswerable items",
    "distractor_facts": "the values of the wrong options; [] when there are none",
}
_CHOICES = {"split": SPLITS, "group": GROUPS, "kind": KINDS}


class ExamSource(BaseModel):
    """Where the answer is (or, for unanswerable items, would be): a file of the corpus and its article."""

    model_config = ConfigDict(extra="allow")
    file: StrictStr = Field(min_length=1)
    article: StrictStr | None = None


class ExamItem(BaseModel):
    """One exam question (see the module docstring). Extra keys (provenance, review marks) are kept."""

    model_config = ConfigDict(extra="allow")
    id: StrictStr
    fact_id: StrictStr
    split: Literal["train", "dev", "test"]
    answerable: StrictBool
    source: ExamSource
    question: StrictStr
    options: list[StrictStr]
    gold: StrictInt
    reference: StrictStr
    key_facts: list[StrictStr]
    distractor_facts: list[StrictStr]
    kind: Literal["fact", "worked_example"] = "fact"
    group: Literal["qa", "document_only"] | None = None
    _where: str = PrivateAttr(default="")

    @property
    def where(self) -> str:
        """'file:line' the item was read from ('' for items built in code)."""
        return self._where

    @property
    def gold_option(self) -> str:
        return self.options[self.gold]

    @property
    def abstain_index(self) -> int:
        """The index of the "Los documentos no lo indican" option."""
        return next(i for i, option in enumerate(self.options) if _is_abstain_option(option))

    def to_json(self) -> dict[str, Any]:
        """The item as one exam line (extra keys kept)."""
        return self.model_dump(mode="json")

    def score_answer(self, answer: str) -> AnswerScore:
        """Key-fact recall, precision and correctness of a short answer to this item."""
        return score_answer(answer, self.key_facts, self.distractor_facts, question=self.question,
                            answerable=self.answerable)


def _is_abstain_option(option: str) -> bool:
    return normalize(option) == normalize(ABSTAIN_OPTION)


# --- reading and checking -----------------------------------------------------------------------------

def parse_item(obj: dict[str, Any], where: str) -> ExamItem:
    """One exam line as an `ExamItem`, or `AmautaError` naming `where` and the fix."""
    try:
        item = ExamItem.model_validate(obj)
    except ValidationError as exc:
        raise AmautaError(f"{where}: {_describe_validation_error(exc, obj)}") from None
    _check_item(item, where)
    item._where = where
    return item


def _describe_validation_error(exc: ValidationError, obj: dict[str, Any]) -> str:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    name = ".".join(loc)
    label = f"item {obj['id']!r}: " if isinstance(obj.get("id"), str) else ""
    if error["type"] == "missing":
        hint = _FIELD_HINTS.get(loc[0], "") if len(loc) == 1 else ""
        return f"{label}lacks {name!r}; add it" + (f" ({hint})" if hint else "")
    if loc[0] in _CHOICES and len(loc) == 1:
        choices = _CHOICES[loc[0]]
        value = error.get("input")
        return (f"{label}{name} {value!r} is unknown; use {', '.join(choices)}"
                f"{did_you_mean(str(value), choices)}")
    return f"{label}{name!r} {error['msg'].lower()}, got {error.get('input')!r}; " \
           f"{_FIELD_HINTS.get(loc[0], 'fix the value')}"


def _check_item(item: ExamItem, where: str) -> None:
    """The rules a schema cannot say: options, gold, abstention and what each split may hold."""
    label = f"item {item.id!r}"
    for name in ("id", "fact_id", "question", "reference"):
        if not getattr(item, name).strip():
            raise AmautaError(f"{where}: {label} has an empty {name!r}; write {_FIELD_HINTS[name]}")
    n = len(item.options)
    if not MIN_OPTIONS <= n <= MAX_OPTIONS:
        raise AmautaError(f"{where}: {label} has {n} option{'s' if n != 1 else ''}; give {MIN_OPTIONS}-{MAX_OPTIONS} "
                          f"options, one of them {ABSTAIN_OPTION!r}")
    seen: dict[str, int] = {}
    for i, option in enumerate(item.options):
        if not option.strip():
            raise AmautaError(f"{where}: {label} option {i} is empty; write its text or remove it")
        key = normalize(option)
        if key in seen:
            raise AmautaError(f"{where}: {label} options {seen[key]} and {i} say the same ({option!r}); "
                              "make every option different")
        seen[key] = i
    if not 0 <= item.gold < n:
        raise AmautaError(f"{where}: {label} has gold {item.gold} but {n} options; gold is the 0-based index "
                          f"of the right option (0-{n - 1})")
    if not any(_is_abstain_option(option) for option in item.options):
        raise AmautaError(f"{where}: {label} lacks the option {ABSTAIN_OPTION!r}; add it to 'options' "
                          "(it is the right answer of unanswerable items)")
    _check_answerability(item, where, label)
    if item.split == "train" and item.group == "document_only":
        raise AmautaError(f"{where}: {label} is a 'train' phrasing of the document-only fact {item.fact_id!r}; "
                          "document-only facts have no training phrasings: move it to dev/test or set group 'qa'")


def _check_answerability(item: ExamItem, where: str, label: str) -> None:
    abstain = item.abstain_index
    if not item.answerable and item.gold != abstain:
        raise AmautaError(f"{where}: {label} is unanswerable (answerable: false) but its gold is "
                          f"{item.gold_option!r}; set gold to {abstain}, the index of {ABSTAIN_OPTION!r}")
    if item.answerable and item.gold == abstain:
        raise AmautaError(f"{where}: {label} is answerable but its gold is {ABSTAIN_OPTION!r}; point gold at "
                          "the right option, or set answerable to false")
    if item.answerable and not any(fact.strip() for fact in item.key_facts):
        raise AmautaError(f"{where}: {label} has no key_facts; list {_FIELD_HINTS['key_facts'].split(';')[0]}")


def check_items(items: Iterable[ExamItem]) -> list[ExamItem]:
    """Cross-item rules: ids unique, and the items of one fact agree on answerable, kind, group, file."""
    items = list(items)
    first_id: dict[str, ExamItem] = {}
    first_of_fact: dict[str, ExamItem] = {}
    for number, item in enumerate(items, start=1):
        where = item.where or f"item {number}"
        if item.id in first_id:
            earlier = first_id[item.id].where or "an earlier item"
            raise AmautaError(f"{where}: id {item.id!r} is already used by {earlier}; give each item its own id")
        first_id[item.id] = item
        head = first_of_fact.setdefault(item.fact_id, item)
        for name in ("answerable", "kind", "group"):
            if getattr(item, name) != getattr(head, name):
                raise AmautaError(f"{where}: item {item.id!r} has {name} {getattr(item, name)!r} but "
                                  f"{head.where or head.id} gives fact {item.fact_id!r} {getattr(head, name)!r}; "
                                  "the items of one fact share answerable, kind, group and source file")
        if item.source.file != head.source.file:
            raise AmautaError(f"{where}: item {item.id!r} cites {item.source.file!r} but {head.where or head.id} "
                              f"cites {head.source.file!r} for fact {item.fact_id!r}; use one source file per fact")
    return items


def read_exam(path: str | Path, split: str | None = None) -> list[ExamItem]:
    """Read and check an exam JSONL file; with `split`, keep that split's items only.

    Every problem raises `AmautaError` naming file:line and the fix; the whole file is checked before
    anything is returned, whatever `split` asks for.
    """
    if split is not None and split not in SPLITS:
        raise AmautaError(f"split {split!r} is unknown; use {', '.join(SPLITS)}{did_you_mean(split, SPLITS)}")
    path = Path(path)
    items = [parse_item(obj, f"{path}:{line}") for line, obj in _numbered(path)]
    if not items:
        raise AmautaError(f"{path}: no exam items; write one JSON object per line (docs/evaluate.md)")
    check_items(items)
    if split is None:
        return items
    chosen = [item for item in items if item.split == split]
    if not chosen:
        raise AmautaError(f"{path}: no items in split {split!r}; the file has "
                          f"{', '.join(f'{k} ({v})' for k, v in sorted(Counter(i.split for i in items).items()))}")
    return chosen


def _numbered(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each JSONL line; `read_jsonl` names bad JSON by line, so count the same way."""
    if not path.is_file():
        raise AmautaError(f"{path}: exam file not found")
    with open(path, encoding="utf-8-sig") as handle:
        numbers = [n for n, line in enumerate(handle, start=1) if line.strip()]
    yield from zip(numbers, read_jsonl(path), strict=True)


def write_exam(path: str | Path, items: Iterable[ExamItem | dict[str, Any]]) -> Path:
    """Check the items and write them atomically as an exam file (nothing is written when one is bad)."""
    parsed = [item if isinstance(item, ExamItem) else parse_item(item, f"item {n}")
              for n, item in enumerate(items, start=1)]
    for n, item in enumerate(parsed, start=1):
        _check_item(item, item.where or f"item {n}")
    check_items(parsed)
    return atomic_write_jsonl(path, [item.to_json() for item in parsed])


# --- the exam's design ------------------------------------------------------------------------------------

def exam_counts(items: Iterable[ExamItem]) -> dict[str, Any]:
    """Facts and items by split, group and kind, and the unanswerable count and share."""
    items = list(items)
    facts: dict[str, ExamItem] = {}
    for item in items:
        facts.setdefault(item.fact_id, item)
    answerable_facts = [f for f in facts.values() if f.answerable]
    unanswerable = [i for i in items if not i.answerable]
    return {
        "items": len(items),
        "facts": len(answerable_facts),
        "unanswerable_facts": len(facts) - len(answerable_facts),
        "items_by_split": dict(Counter(i.split for i in items)),
        "facts_by_group": dict(Counter(str(f.group) for f in answerable_facts)),
        "facts_by_kind": dict(Counter(f.kind for f in answerable_facts)),
        "unanswerable_items": len(unanswerable),
        "unanswerable_by_split": dict(Counter(i.split for i in unanswerable)),
        "unanswerable_share": len(unanswerable) / len(items) if items else 0.0,
    }


def exam_design_problems(items: Iterable[ExamItem], *, min_test: int = 3, min_dev: int = 1, min_train_qa: int = 2,
                         min_unanswerable_test: int = 40, min_unanswerable_share: float = 0.15) -> list[str]:
    """What keeps an exam from measuring what it claims (issue 12's design); [] when nothing does.

    Every fact needs `min_test` test and `min_dev` dev phrasings, every QA fact `min_train_qa` train
    phrasings; the test split needs `min_unanswerable_test` unanswerable items and the whole exam a
    `min_unanswerable_share` of them; no dev/test question may appear in a train item's text.
    """
    items = list(items)
    problems = []
    by_fact: dict[str, Counter] = defaultdict(Counter)
    for item in items:
        by_fact[item.fact_id][item.split] += 1
    group = {item.fact_id: item.group for item in items}
    for fact, splits in by_fact.items():
        if splits["test"] < min_test:
            problems.append(f"fact {fact!r}: {splits['test']} test phrasings, needs {min_test}")
        if splits["dev"] < min_dev:
            problems.append(f"fact {fact!r}: {splits['dev']} dev phrasings, needs {min_dev}")
        if group[fact] == "qa" and splits["train"] < min_train_qa:
            problems.append(f"QA fact {fact!r}: {splits['train']} train phrasings, needs {min_train_qa}")
    counts = exam_counts(items)
    if counts["unanswerable_by_split"].get("test", 0) < min_unanswerable_test:
        problems.append(f"{counts['unanswerable_by_split'].get('test', 0)} unanswerable test items, "
                        f"needs {min_unanswerable_test}")
    if counts["unanswerable_share"] < min_unanswerable_share:
        problems.append(f"unanswerable items are {counts['unanswerable_share']:.0%} of the exam, "
                        f"needs {min_unanswerable_share:.0%}")
    train_texts = [(item.where or item.id, f"{item.question}\n{item.reference}") for item in items if item.split == "train"]
    for leak in leaked_questions(items, train_texts):
        problems.append(f"{leak.split} question {leak.item_id!r} appears in train item {leak.where}")
    return problems


# --- leaks into training data --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Leak:
    """A dev/test question found inside a training text.

    item_id, split, question: the exam item; where: the training text's location ("train.jsonl:12") or
    its 0-based position when the texts came without one.
    """

    item_id: str
    split: str
    question: str
    where: str


_WORD = re.compile(r"\w+")
_KEY_WORDS = 3  # questions are indexed by their first words; a window of that many finds candidates


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(fold(text)))


def leaked_questions(exam_items: Iterable[ExamItem], dataset_texts: Iterable[str | tuple[str, str]],
                     splits: Iterable[str] = ("dev", "test")) -> list[Leak]:
    """The `splits` questions whose text (accents, case and punctuation ignored) occurs in a training text.

    `dataset_texts` holds strings or (where, text) pairs, e.g. from `iter_dataset_texts`. An adapter whose
    training data contains a dev or test question must not be scored on that exam. Runs in time linear in
    the training text: questions are indexed by their first words.
    """
    wanted = set(splits)
    index: dict[tuple[str, ...], list[tuple[tuple[str, ...], ExamItem]]] = defaultdict(list)
    for item in exam_items:
        words = _words(item.question)
        if item.split in wanted and words:
            index[words[:_KEY_WORDS]].append((words, item))
    key_lengths = sorted({len(key) for key in index})
    leaks, reported = [], set()
    for position, entry in enumerate(dataset_texts):
        where, text = entry if isinstance(entry, tuple) else (str(position), entry)
        words = _words(text)
        for start in range(len(words)):
            for length in key_lengths:
                for question, item in index.get(words[start:start + length], ()):
                    if item.id not in reported and words[start:start + len(question)] == question:
                        reported.add(item.id)
                        leaks.append(Leak(item.id, item.split, item.question, where))
    return leaks


def iter_dataset_texts(path: str | Path) -> Iterator[tuple[str, str]]:
    """('file:line', text) for every record of a JSONL file or of the *.jsonl files in a dataset folder.

    A record's text is its messages' contents (chat records), its "text" (completion records) or else all
    its string values, joined.
    """
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    for file in files:
        for line, obj in _numbered(file):
            yield f"{file}:{line}", _record_text(obj)


def _record_text(obj: dict[str, Any]) -> str:
    messages = obj.get("messages")
    if isinstance(messages, list):
        return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    if isinstance(obj.get("text"), str):
        return obj["text"]
    return "\n".join(v for v in obj.values() if isinstance(v, str))
