"""The judge room's tables: the same rows in the terminal (rich) and in `amauta report` (Markdown).

`comparison_rows` builds the candidate-by-category comparison (the base / adapter / RAG / adapter+RAG
table) once; `render_comparison` prints it and `report_markdown` writes it. `reference_rows` puts each
candidate's key-fact recall and token F1 against the references beside the judge's mean score (the same
comparison with numbers that need no judge); `render_reference` and `report_markdown` show it. The judge's section of the
report is registered with `amauta.core.summaries` for summaries whose `task` is `judge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amauta.core.summaries import Chart, ReportSection, register_section
from amauta.evaluate.compare import markdown_table
from amauta.evaluate.stats import MIN_CI_N, has_interval, interval_note
from amauta.judge.rubric import CRITERIA, NAMES_ES


@dataclass(frozen=True)
class ComparisonRow:
    """One candidate's line of the comparison, its cells already formatted.

    attempts: answers per prompt (N). by_category: mean-of-N per category ("–" where it has none).
    mean_of_n: all categories, with its 95% interval. best_of_n: all categories, best attempt per prompt.
    delta: the paired difference against the first candidate (judge's table only), or None.
    """

    candidate: str
    attempts: str
    by_category: list[str]
    mean_of_n: str
    best_of_n: str
    delta: dict[str, Any] | None

    def delta_text(self, separator: str) -> str:
        """The delta as "+0.25 [+0.10, +0.40]" (`separator` between the bounds), "–" without one, and with
        too few shared prompts no interval (so nothing reads as significant): "+1.00 (n=2, sin intervalo)"."""
        d = self.delta
        if not d:
            return "–"
        low, high = d["ci"]
        if not has_interval(d.get("n")) or low != low:
            return f"{d['delta']:+.2f} {interval_note(d.get('n'))}"
        return f"{d['delta']:+.2f} [{low:+.2f}{separator}{high:+.2f}]"


def comparison_rows(summary: dict[str, Any], which: str = "judge_table") -> list[ComparisonRow]:
    """The comparison of `summary[which]` ("judge_table" or "human_table"), one row per candidate that has
    an "all" entry; the deltas come with the judge's table."""
    deltas = (summary.get("judge_deltas") or {}) if which == "judge_table" else {}
    rows = []
    for candidate, by_category in (summary.get(which) or {}).items():
        entry = by_category.get("all")
        if entry is None:
            continue
        cells = [f"{by_category[c]['mean_of_n']['overall']:.2f}" if c in by_category else "–"
                 for c in summary.get("categories", [])]
        rows.append(ComparisonRow(candidate, f"{entry['attempts']:.0f}", cells, _ci(entry["mean_of_n"], entry["n"]),
                                  f"{entry['best_of_n']['overall']:.2f}", deltas.get(candidate)))
    return rows


REFERENCE_HEADERS = ["Candidate", "Judge (mean-of-N, 1–5)", "Key-fact recall % [95% CI]", "Token F1 % [95% CI]"]


def _metric(entry: dict[str, Any] | None, separator: str) -> str:
    """ "46.7 [30.0–63.3] (n=12)", "46.7 (n=2, sin intervalo)" or "–" (n: prompts with that metric)."""
    if not entry:
        return "–"
    low, high = entry["ci"]
    if not has_interval(entry["n"]) or low != low:
        return f"{100 * entry['mean']:.1f} {interval_note(entry['n'])}"
    return f"{100 * entry['mean']:.1f} [{100 * low:.1f}{separator}{100 * high:.1f}] (n={entry['n']})"


def reference_rows(summary: dict[str, Any], separator: str = "–") -> list[list[str]]:
    """One row per candidate: the judge's mean-of-N over all prompts (– without a judge), then key-fact recall
    and token F1 against the prompts' references (mean of each prompt's mean over its attempts)."""
    judge = {row.candidate: row.mean_of_n for row in comparison_rows(summary)}
    table = summary.get("reference_table") or {}
    return [[candidate, judge.get(candidate, "–"), _metric(by.get("all", {}).get("key_fact_recall"), separator),
             _metric(by.get("all", {}).get("token_f1"), separator)]
            for candidate, by in table.items()]


def render_reference(summary: dict[str, Any]):
    """The candidates' key-fact recall and token F1 against the references, beside the judge's score."""
    from rich.table import Table

    out = Table(title="Against the references (no judge needed): key-fact recall and token F1", title_justify="left")
    for header in REFERENCE_HEADERS:
        out.add_column(header, justify="left" if header == "Candidate" else "right")
    for row in reference_rows(summary):
        out.add_row(*row)
    return out


# ---------------------------------------------------------------------------------------------------------
# The terminal (rich), shared with `amauta eval grade`
# ---------------------------------------------------------------------------------------------------------

def _ci(entry: dict[str, Any], n: int | None) -> str:
    """ "3.67 [3.10–4.20]", or "3.67 (n=2, sin intervalo)" over fewer than MIN_CI_N prompts."""
    low, high = entry["ci"]
    if not has_interval(n) or low != low:
        return f"{entry['overall']:.2f} {interval_note(n)}"
    return f"{entry['overall']:.2f} [{low:.2f}–{high:.2f}]"


def render_table(table: dict[str, dict[str, Any]], title: str):
    """Candidate × category rows: n, each criterion as best/mean, overall best-of-N and mean-of-N with its CI."""
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for column in ("candidate", "category", "n", *CRITERIA, "best-of-N", "mean-of-N [95% CI]"):
        out.add_column(column, justify="left" if column in ("candidate", "category") else "right")
    for candidate, categories in table.items():
        for category, entry in categories.items():
            cells = [f"{entry['best_of_n'][c]:.1f}/{entry['mean_of_n'][c]:.1f}" for c in CRITERIA]
            out.add_row(candidate, category, str(entry["n"]), *cells, f"{entry['best_of_n']['overall']:.2f}",
                        _ci(entry["mean_of_n"], entry["n"]), end_section=category == "all")
    return out


def render_comparison(summary: dict[str, Any], which: str = "judge_table"):
    """One row per candidate (the base / adapter / RAG / adapter+RAG table): mean-of-N per category."""
    from rich.table import Table

    categories = [c for c in summary["categories"]]
    out = Table(title=f"{'Judge' if which == 'judge_table' else 'People'}: mean-of-N by category "
                      "(1–5; best-of-N in the last column)", title_justify="left")
    out.add_column("candidate")
    out.add_column("N", justify="right")
    for category in categories:
        out.add_column(category, justify="right")
    out.add_column("all [95% CI]", justify="right")
    if which == "judge_table":
        out.add_column("Δ vs first [95% CI]", justify="right")
    out.add_column("best-of-N", justify="right")
    for row in comparison_rows(summary, which):
        extra = [row.delta_text("–")] if which == "judge_table" else []
        out.add_row(row.candidate, row.attempts, *row.by_category, row.mean_of_n, *extra, row.best_of_n)
    return out


def render_agreement(summary: dict[str, Any]):
    """Judge vs people per criterion: weighted kappa, Spearman, exact and within-one agreement."""
    from rich.table import Table

    out = Table(title="Agreement, judge vs people (Cohen's quadratic-weighted kappa, Spearman)", title_justify="left")
    for column in ("criterion", "n", "kappa_w", "spearman (p)", "exact", "±1", "judge mean", "people mean"):
        out.add_column(column, justify="left" if column == "criterion" else "right")
    for criterion, row in summary["agreement"].items():
        name = NAMES_ES.get(criterion, "all criteria")
        out.add_row(name, str(row["n"]), _num(row["kappa"]), f"{_num(row['spearman'])} ({_num(row['p'], 3)})",
                    _pct(row["exact"]), _pct(row["within_one"]), _num(row["mean_a"]), _num(row["mean_b"]))
    between = summary.get("between_people")
    if between:
        out.add_row("people vs people", str(between["n"]), _num(between["kappa"]), _num(between["spearman"]),
                    _pct(between["exact"]), _pct(between["within_one"]), "", "")
    return out


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None or x != x else f"{100 * x:.0f}%"


def failure_line(summary: dict[str, Any]) -> str:
    """Why nothing was graded although a judge was asked: its replies, not a missing --judge-url."""
    failures = summary["judge_failures"]
    url = summary.get("judge_url")
    who = f"the judge at {url} ({summary.get('judge')})" if url else f"the judge {summary.get('judge')}"
    if failures["replies"]:
        reply = " ".join(failures["first_reply"].split())
        reply = reply if len(reply) <= 120 else reply[:117] + "..."
        return (f"{who} answered {failures['replies']} times but no reply was valid rubric JSON; first bad reply: "
                f"{reply!r} ({failures['first_error']}); try another judge model (--judge-model) or more "
                "--judge-retries, then rerun the same command")
    return (f"{who} refused all {failures['verdicts']} requests; first error: {failures['first_error']}; "
            "fix the cause and rerun the same command")


def print_summary(summary: dict[str, Any], console=None) -> None:
    """Every table the summary holds; the agreement table goes with every table that has both sources."""
    from rich.markup import escape

    from amauta.core.console import make_console

    console = console or make_console()
    both = bool(summary.get("agreement"))
    graders = [("judge_table", f"LLM judge ({summary.get('judge', '?')})"),
               ("human_table", f"People ({', '.join(summary.get('graders', []))})")]
    for key, who in graders:
        if summary.get(key):
            console.print(render_table(summary[key], f"{who}: 1–5, each criterion as best-of-N/mean-of-N"))
            console.print(render_comparison(summary, key))
            if both:
                console.print(render_agreement(summary))
    if summary.get("reference_table"):
        console.print(render_reference(summary))
    if not summary.get("judge_table") and not summary.get("human_table"):
        if summary.get("judge") and summary.get("judge_failures"):
            console.print(f"[red]{escape(failure_line(summary))}[/]", highlight=False)
        else:
            console.print(f"{summary.get('answers', 0)} answers generated and nothing graded yet; grade them with "
                          "`amauta eval grade RUN --grader NAME` or judge them with `amauta eval judge --judge-url ...`")
    if summary.get("failed"):
        console.print(f"[yellow]{summary['failed']} answers have no verdict (see 'error' in items.jsonl); "
                      "rerun the same command to ask the judge again[/]")


# ---------------------------------------------------------------------------------------------------------
# Markdown for `amauta report` (the section registered for summaries with task: judge)
# ---------------------------------------------------------------------------------------------------------

def report_markdown(summary: dict[str, Any], heading_level: int = 3) -> str:
    """The judge run as Markdown: the comparison by category, the per-criterion table, people's tables and
    the judge-vs-people agreement (the thesis's Tables 4 and 6, with best-of-N, mean-of-N and intervals)."""
    h = "#" * heading_level
    parts = [f"{h} Rubric grading: {summary.get('set', '?')} (judge: {summary.get('judge') or 'none'}, "
             f"N = {summary.get('n', '?')})",
             f"{summary.get('answers', 0)} answers, {summary.get('judged', 0)} judged, "
             f"{summary.get('failed', 0)} without a verdict; per-answer scores in `{summary.get('items_file', 'items.jsonl')}`. "
             "Scores 1–5; best-of-N keeps each prompt's best attempt (as the thesis), mean-of-N averages the "
             "attempts; [95% bootstrap CI over prompts], none over fewer than "
             f"{MIN_CI_N} prompts (\"sin intervalo\")."]
    specs = summary.get("specs") or []
    if specs:
        parts.append("Candidates:\n\n" + "\n".join(
            f"- `{s['label']}`: model `{s['model']}`" + (f" + adapter `{s['adapter']}`" if s.get("adapter") else "")
            + (f" + RAG index `{s['rag_index']}`" if s.get("rag_index") else "") + f", {s['strategy']} decoding"
            for s in specs))
    if summary.get("reference_table"):
        parts.append("**Against the references (no judge needed)**: key-fact recall is the share of the values a "
                     "reference states (numbers, percentages, amounts, dates) that the answer repeats, over the "
                     "prompts whose reference states some; token F1 is the word overlap with the reference "
                     "(accents, case and articles ignored). Each prompt counts once (the mean of its N attempts); "
                     "[95% bootstrap CI over prompts] (n = prompts).\n\n"
                     + markdown_table(REFERENCE_HEADERS, reference_rows(summary, ", ")))
    categories = summary.get("categories", [])
    for key, who in (("judge_table", "LLM judge"), ("human_table", "People")):
        table = summary.get(key) or {}
        if not table:
            continue
        rows = [[row.candidate, row.attempts, *row.by_category, row.mean_of_n, row.best_of_n, row.delta_text(", ")]
                for row in comparison_rows(summary, key)]
        parts.append(f"**{who}: mean-of-N by category**\n\n" + markdown_table(
            ["Candidate", "N", *categories, "All (mean-of-N)", "All (best-of-N)", "Δ vs first"], rows))
        detail = []
        for candidate, by_category in table.items():
            for category, entry in by_category.items():
                detail.append([candidate, category, str(entry["n"]),
                               *[f"{entry['best_of_n'][c]:.2f} / {entry['mean_of_n'][c]:.2f}" for c in CRITERIA]])
        parts.append(f"**{who}: by criterion (best-of-N / mean-of-N)**\n\n" + markdown_table(
            ["Candidate", "Category", "n", *[NAMES_ES[c] for c in CRITERIA]], detail))
        if summary.get("agreement"):
            parts.append(_agreement_markdown(summary))
    return "\n\n".join(parts) + "\n"


def _agreement_markdown(summary: dict[str, Any]) -> str:
    rows = [[NAMES_ES.get(c, "All criteria"), str(r["n"]), _num(r["kappa"]), _num(r["spearman"]), _num(r["p"], 3),
             _pct(r["exact"]), _pct(r["within_one"])] for c, r in summary["agreement"].items()]
    between = summary.get("between_people")
    if between:
        rows.append(["People vs people", str(between["n"]), _num(between["kappa"]), _num(between["spearman"]),
                     _num(between["p"], 3), _pct(between["exact"]), _pct(between["within_one"])])
    return ("**Agreement, judge vs people** (Cohen's quadratic-weighted kappa, Spearman)\n\n" +
            markdown_table(["Criterion", "n", "κ_w", "Spearman ρ", "p", "Exact", "±1"], rows))


def category_charts(summary: dict[str, Any]) -> list[Chart]:
    """The judge's mean-of-N score per category and candidate, as grouped bars."""
    table = summary.get("judge_table") or {}
    categories = summary.get("categories") or []
    try:  # candidate → category → {"mean_of_n": {"overall": x}}
        series = {c: [by[cat]["mean_of_n"]["overall"] if cat in by else 0 for cat in categories] for c, by in table.items()}
    except (KeyError, TypeError):
        series = {}
    if not (series and categories):
        return []
    return [Chart("categories", categories, series, "Mean score (1–5) by category", "score",
                  "Judge's mean-of-N score by category")]


register_section("judge", ReportSection(title="Rubric grading", markdown=report_markdown, charts=category_charts))
