"""Answer a question from an index: retrieve passages, prompt in Spanish with them numbered, cite sources.

`RagAnswerer` is the one RAG path: `amauta rag ask`, the terminal chat (`amauta chat --rag NAME`), the
server (`amauta serve --rag NAME`) and the judge's law-ec comparison all use it.

    answerer = RagAnswerer("leyes", top_k=4)
    reply = answerer.answer("¿Cuál es la tarifa del IVA?", make_llm())
    print(reply.format())        # the answer, then "Fuentes:" with file, article and page

When no passage passes the relevance threshold the answer says so, and no model is asked, so nothing is
invented. Passages close to the question may still not answer it (a question on the documents' topic
whose answer they do not give): `Grounding` (amauta.rag.grounding) then refuses before the model is
asked (the best passage is not about the question, no passage states the kind of value it asks for,
or the ones that do state it about something else), or after (the answer states a value no cited passage gives); the reply says the documents do not
say it and lists the passages it looked at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amauta.core.errors import AmautaError
from amauta.rag.embed import relevance_threshold
from amauta.rag.grounding import Grounding, Refusal, describe, unsupported_values
from amauta.rag.retrieve import Hit, Mode, Retriever

SYSTEM_PROMPT = (
    "Eres un asistente que responde en español usando solo los fragmentos de documentos que se te dan. "
    "Cita cada dato con el número del fragmento entre corchetes, por ejemplo [1]. Si los fragmentos no "
    "contienen la respuesta, dilo claramente y no inventes nada. Responde de forma breve y precisa."
)
MIN_PASSAGE_CHARS = 120  # shorter than this a passage stops being evidence
NOT_FOUND = ("No encontré información relevante sobre esa pregunta en los documentos indexados, así que no "
             "puedo responderla con fuentes. Prueba a reformularla o a indexar documentos que traten el tema.")
NOT_SAID = ("Los documentos indexados no lo indican: los fragmentos más cercanos tratan temas parecidos, pero "
            "{why}. No pregunté al modelo, para no inventar una respuesta; esos fragmentos están abajo por si "
            "quieres revisarlos.")
NOT_SAID_WHY = {"off_topic": "ninguno trata lo que preguntas",
                "no_value": "ninguno da el dato que pides ({detail})",
                "other_subject": "los que dan el dato que pides ({detail}) no hablan de {words}"}
UNSUPPORTED = ("Los documentos indexados no lo indican: la respuesta del modelo daba {values}, y {that} en los "
               "fragmentos que consultó, así que no la muestro. Esos fragmentos están abajo por si quieres "
               "revisarlos.")
NOT_FOUND_CONTEXT = ("(No se encontró ningún fragmento relevante en los documentos para esta pregunta. Dile al "
                     "usuario que los documentos no tratan ese tema; no inventes una respuesta.)")


@dataclass
class Answer:
    """A RAG answer.

    text: the model's answer (or the message saying the documents do not say).
    sources: the passages the answer cites (all retrieved passages when it cites none); when the answer
        was refused, the passages that were looked at.
    found: False when the documents do not say: no relevant passage (`refused` None, no model asked) or a
        grounding check refused (`refused` says which).
    hits: every passage that was given to the model (or looked at).
    refused: None, or why the documents do not say: "off_topic", "no_value" or "other_subject" (before
        the model was asked), "unsupported" (the model's answer stated values no cited passage gives).
    withheld: the model's answer that "unsupported" replaced, kept for inspection (JSON only).
    """

    text: str
    sources: list[Hit] = field(default_factory=list)
    found: bool = True
    hits: list[Hit] = field(default_factory=list)
    refused: str | None = None
    withheld: str | None = None

    def format(self) -> str:
        """The answer followed by a numbered list of sources a person can open."""
        if not self.sources:
            return self.text
        lines = [self.text.rstrip(), "", "Fuentes:" if self.found else "Fragmentos consultados:"]
        for hit in self.sources:
            number = self.hits.index(hit) + 1 if hit in self.hits else "?"
            lines.append(f"[{number}] {hit.citation()}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = {"text": self.text, "found": self.found,
               "sources": [{"number": self.hits.index(h) + 1, **h.to_dict()} for h in self.sources]}
        if self.refused:
            out.update(refused=self.refused, withheld=self.withheld)
        return out


def format_passages(hits: list[Hit], max_chars: int) -> str:
    """Numbered passages for the prompt; each passage is cut so that all of them fit in `max_chars`."""
    budget = max(MIN_PASSAGE_CHARS, max_chars // max(1, len(hits)))
    blocks = []
    for number, hit in enumerate(hits, start=1):
        where = Path(hit.source).name + (f", {hit.article}" if hit.article else "") + (
            f", página {hit.page}" if hit.source.lower().endswith(".pdf") else "")
        text = hit.text if len(hit.text) <= budget else hit.text[:budget].rsplit(" ", 1)[0] + " …"
        blocks.append(f"[{number}] ({where})\n{text}")
    return "\n\n".join(blocks)


def rag_messages(question: str, hits: list[Hit], max_chars: int, *, history: list[dict] | None = None,
                 system: str | None = None) -> list[dict]:
    """The prompt layout of every RAG answer: the Spanish RAG system prompt, earlier turns, then one user turn
    with the numbered passages (cut to fit `max_chars`) and the question.

    `RagAnswerer` uses it at inference and `amauta data augment --recipe raft` to build training examples,
    so a model trained on RAFT data sees exactly the layout it will be asked in.
    """
    context = format_passages(hits, max_chars) if hits else NOT_FOUND_CONTEXT
    user = f"Fragmentos de los documentos:\n\n{context}\n\nPregunta: {question.strip()}"
    messages = [{"role": "system", "content": system or SYSTEM_PROMPT}]
    messages += [m for m in (history or []) if m.get("role") != "system"]
    messages.append({"role": "user", "content": user})
    return messages


def cited_numbers(text: str, count: int) -> list[int]:
    """The passage numbers an answer cites ([1], [2, 3], [1][3]), in order, within 1..count."""
    numbers: list[int] = []
    for group in re.findall(r"\[([\d,\s]+)\]", text):
        for piece in group.split(","):
            if piece.strip().isdigit() and 1 <= int(piece) <= count and int(piece) not in numbers:
                numbers.append(int(piece))
    return numbers


class RagAnswerer:
    """Retrieval-augmented answers over one index.

    index: index name, folder, or an opened `Index`.
    top_k: passages given to the model.
    min_score: cosine similarity under which a passage is irrelevant (default: calibrated per embedder).
    mode: hybrid (BM25 + dense, fused), dense or bm25.
    max_context_chars: characters of passages in the prompt (keeps small models inside their context).
    qdrant_url: Qdrant server, when the index keeps its vectors there and the address changed.
    grounding: the checks beyond `min_score` (default `Grounding()`; `Grounding.off()` for none).
    """

    def __init__(self, index: Any, top_k: int = 4, *, min_score: float | None = None, mode: Mode = "hybrid",
                 max_context_chars: int = 6000, qdrant_url: str | None = None, grounding: Grounding | None = None):
        from amauta.rag.index import Index, open_index

        if top_k < 1:
            raise AmautaError(f"top_k must be at least 1, got {top_k}")
        self.index = index if isinstance(index, Index) else open_index(index, qdrant_url=qdrant_url)
        self.top_k = top_k
        self.min_score = relevance_threshold(self.index.embedder) if min_score is None else min_score
        self.max_context_chars = max_context_chars
        self.retriever = Retriever(self.index, mode=mode)
        self.grounding = Grounding() if grounding is None else grounding

    def retrieve(self, question: str) -> list[Hit]:
        """The relevant passages for `question`, best first (empty when none is relevant)."""
        if not isinstance(question, str) or not question.strip():
            raise AmautaError("the question is empty; type a question")
        return self.retriever.search(question, self.top_k, min_score=self.min_score)

    def check_question(self, question: str, hits: list[Hit]) -> Refusal | None:
        """Whether `hits` can answer `question` (None), or why not (see `Grounding.check_question`)."""
        return self.grounding.check_question(question, hits, self.index.bm25)

    def build_messages(self, question: str, history: list[dict] | None = None, system: str | None = None, *,
                       loaded: Any = None, max_new_tokens: int = 512,
                       hits: list[Hit] | None = None) -> tuple[list[dict], list[Hit]]:
        """Chat messages with the numbered passages in the last user turn, and the passages used.

        history: earlier turns (user/assistant messages) of a conversation, without system messages.
        system: replaces the Spanish RAG system prompt.
        loaded: a LoadedModel; when given, passages are shortened until the prompt and `max_new_tokens`
            fit its context window (small models have 512-2048 tokens).
        hits: passages already retrieved and checked; by default they are retrieved here, and none are
            used (the prompt says nothing relevant was found) when the grounding check refuses them.
        """
        if hits is None:
            hits = self.retrieve(question)
            if self.check_question(question, hits) is not None:
                hits = []
        budget = self.max_context_chars
        limit = _token_limit(loaded, max_new_tokens)
        while True:
            messages = self._messages(question, history, system, hits, budget)
            if limit is None or _count_tokens(loaded, messages) <= limit:
                break
            floor = MIN_PASSAGE_CHARS * max(1, len(hits))
            if budget > floor:  # shorten every passage in proportion first ...
                used = _count_tokens(loaded, messages)
                budget = max(floor, int(budget * limit / used * 0.9))
            elif len(hits) > 1:  # ... then drop the weakest passages
                hits = hits[:-1]
            else:
                break  # one short passage still does not fit: generation reports the context error
        return messages, hits

    def _messages(self, question: str, history: list[dict] | None, system: str | None, hits: list[Hit],
                  budget: int) -> list[dict]:
        return rag_messages(question, hits, budget, history=history, system=system)

    def answer(self, question: str, llm: Any, *, history: list[dict] | None = None, max_tokens: int = 512,
               temperature: float = 0.0) -> Answer:
        """Retrieve, check, generate with `llm` (an `amauta.llm.LLM`), check again, attach the cited sources."""
        hits = self.retrieve(question)
        if not hits:
            return Answer(text=NOT_FOUND, sources=[], found=False, hits=[])
        refusal = self.check_question(question, hits)
        if refusal is not None:
            why = NOT_SAID_WHY[refusal.reason].format(detail=refusal.detail, words=refusal.words)
            return Answer(text=NOT_SAID.format(why=why), sources=list(hits), found=False, hits=list(hits),
                          refused=refusal.reason)
        messages, hits = self.build_messages(question, history, loaded=getattr(llm, "loaded", None),
                                             max_new_tokens=max_tokens, hits=hits)
        text = llm.complete(messages, max_tokens=max_tokens, temperature=temperature).strip()
        return self.check_answer(question, text, hits)

    def check_answer(self, question: str, text: str, hits: list[Hit]) -> Answer:
        """The model's `text` with its cited sources, or the reply that the documents do not say it when it
        states a value (number, percentage, amount, date) that none of the passages it cites gives."""
        cited = cited_numbers(text, len(hits))
        sources = [hits[n - 1] for n in cited] if cited else list(hits)
        if self.grounding.check_values:
            missing = unsupported_values(text, [_evidence(h) for h in sources], question)
            if missing:
                shown = ", ".join(f"«{describe(v)}»" for v in missing)
                that = "ese dato no aparece" if len(missing) == 1 else "esos datos no aparecen"
                return Answer(text=UNSUPPORTED.format(values=shown, that=that), sources=sources, found=False,
                              hits=hits, refused="unsupported", withheld=text)
        return Answer(text=text, sources=sources, found=True, hits=hits)


def _evidence(hit: Hit) -> str:
    """What the model saw of a passage: where it is from ("iva.md, Art. 2") and its text."""
    return f"{Path(hit.source).name}, {hit.article or ''}, página {hit.page}\n{hit.text}"


def _token_limit(loaded: Any, max_new_tokens: int) -> int | None:
    """Prompt tokens a local model can take while leaving room for the answer (None: unknown, e.g. an endpoint)."""
    if loaded is None or getattr(loaded, "tokenizer", None) is None:
        return None
    profile = getattr(loaded, "profile", None)
    context = int(getattr(profile, "context_length", 0) or 0) or int(
        getattr(getattr(loaded.model, "config", None), "max_position_embeddings", 0) or 0)
    return max(64, context - max_new_tokens) if context else None


def _count_tokens(loaded: Any, messages: list[dict]) -> int:
    """Prompt tokens of `messages` as the model will see them: rendered with its own chat template."""
    from amauta.models.templates import apply_template

    try:
        if getattr(loaded, "profile", None) is None:
            raise AmautaError("no profile, so no template to render with")
        text = apply_template(loaded, messages)
    except AmautaError:  # no template, or one that refuses these roles: contents plus a margin for markers
        return sum(len(loaded.tokenizer(m["content"], add_special_tokens=False)["input_ids"]) + 8 for m in messages)
    return len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])
