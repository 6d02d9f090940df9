"""`amauta rag ask`: the rag room's answerer, with the model that `make_llm` picks.

The rag room sits below llm (`RagAnswerer.answer(question, llm)` takes any `LLM`), so the command that
picks the model lives here, one room up, and joins the rag room's `rag` group. Heavy imports stay inside
the command so `amauta --help` is fast.
"""

from __future__ import annotations

import typer

from amauta.core.threads import THREADS_OPTION, apply_threads


def ask_command(
    question: str = typer.Argument(..., help="The question, in Spanish (quoted)."),
    index: str = typer.Option(..., "--index", "-i", help="Index name or folder."),
    model: str = typer.Option(None, "--model", "-m", help="Local model (profile, folder, GGUF) or the endpoint's model name."),
    adapter: str = typer.Option(None, "--adapter", help="LoRA adapter or training run folder for a local model."),
    base_url: str = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1)."),
    api_key: str = typer.Option(None, "--api-key", help="API key for the endpoint (default: $AMAUTA_LLM_API_KEY, "
                                "then $AMAUTA_API_KEY, then $OPENAI_API_KEY)."),
    top_k: int = typer.Option(4, "--top-k", "-k", help="Passages given to the model."),
    min_score: float = typer.Option(None, "--min-score", help="Cosine similarity under which a passage is irrelevant."),
    mode: str = typer.Option("hybrid", "--mode", help="Retrieval: hybrid, dense or bm25."),
    min_overlap: float = typer.Option(None, "--min-overlap",
                                      help="Share of the question's content words the best passage must hold "
                                           "(default 0.25; 0 turns this check off)."),
    answer_type: bool = typer.Option(True, "--answer-type/--no-answer-type",
                                     help="Say the documents do not say when no passage states the kind of value "
                                          "the question asks for (a percentage, an amount, a date...)."),
    min_value_overlap: float = typer.Option(None, "--min-value-overlap",
                                            help="Share of the question's words (those the documents use) that a "
                                                 "passage stating the asked value must hold, so the value is about "
                                                 "what is asked (default 0: off; 0.6 was calibrated, docs/rag.md)."),
    check_values: bool = typer.Option(True, "--check-values/--no-check-values",
                                      help="Withhold an answer that states a number or date no cited passage gives."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Longest answer in tokens."),
    retrieve_only: bool = typer.Option(False, "--retrieve-only", help="Show the passages without asking a model."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer and sources as JSON."),
    qdrant_url: str = typer.Option(None, "--qdrant-url", help="Qdrant server, if the index's vectors moved."),
    threads: int | None = THREADS_OPTION,
) -> None:
    """Answer a question from an index, citing document, article and page."""
    apply_threads(threads)
    import json

    from amauta.core.console import make_console
    from amauta.core.errors import AmautaError
    from amauta.rag.answer import NOT_FOUND, Answer, RagAnswerer
    from amauta.rag.grounding import DEFAULT_MIN_OVERLAP, DEFAULT_MIN_VALUE_OVERLAP, Grounding

    if not question.strip():
        raise AmautaError("the question is empty; usage: amauta rag ask \"¿...?\" --index NAME")
    grounding = Grounding(min_overlap=DEFAULT_MIN_OVERLAP if min_overlap is None else min_overlap,
                          answer_type=answer_type, check_values=check_values,
                          min_value_overlap=DEFAULT_MIN_VALUE_OVERLAP if min_value_overlap is None else min_value_overlap)
    answerer = RagAnswerer(index, top_k=top_k, min_score=min_score, mode=mode, qdrant_url=qdrant_url,
                           grounding=grounding)
    if retrieve_only:
        hits = answerer.retrieve(question)
        reply = Answer(text="" if hits else NOT_FOUND, sources=hits, found=bool(hits), hits=hits)
    else:
        from amauta.llm import make_llm

        llm = make_llm(model, base_url=base_url, api_key=api_key, adapter=adapter)
        reply = answerer.answer(question, llm, max_tokens=max_tokens)
    console = make_console(soft_wrap=True)
    if as_json:
        print(json.dumps(reply.to_dict(), ensure_ascii=False, indent=2))
        return
    if retrieve_only:
        for number, hit in enumerate(reply.hits, start=1):
            console.print(f"[bold][{number}][/] {hit.citation()}  (coseno {hit.dense_score:.3f})", highlight=False)
            console.print(hit.text, highlight=False, markup=False)
            console.print()
        if not reply.hits:
            console.print(NOT_FOUND, highlight=False)
        return
    console.print(reply.format(), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add `ask` to the rag room's `rag` group (the rag room adds the group to the app)."""
    from amauta.rag.commands import rag_app

    rag_app.command("ask")(ask_command)
