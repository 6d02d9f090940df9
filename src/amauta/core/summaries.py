"""How `amauta report` renders a task's `summary.json`: the interface a task declares, and its registry.

The report room sits above every room that writes summaries, so none of them may import it. The eval
tasks that write the runner's summary (models with metrics) are drawn by one generic section from the
columns they declare in `amauta.evaluate.compare.COLUMNS`. A task that writes its own kind of summary
(the judge) declares a `ReportSection` here instead, keyed by its summary's `task` field, when its module
is imported; the report room imports the rooms below it and looks the section up by `summary["task"]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Chart:
    """Grouped bars for the report to draw: one group per entry of `groups`, one bar per series in each.

    name: part of the figure's file name. caption: shown under it (the report adds the folder's name).
    errors: optional 95% intervals per series, (low, high) per bar in the bars' units, None for a bar
    without one (drawn as whiskers). A NaN value draws no bar (that group has no such series).
    """

    name: str
    groups: list[str]
    series: dict[str, list[float]]
    title: str
    ylabel: str
    caption: str
    errors: dict[str, list[tuple[float, float] | None]] | None = None


def _no_charts(summary: dict[str, Any]) -> list[Chart]:
    return []


@dataclass(frozen=True)
class ReportSection:
    """How a task's summary becomes a section of the report.

    title: the section's heading. markdown: `(summary, heading_level=3) -> str`, the section's body.
    charts: `(summary) -> [Chart]`, drawn after the body.
    """

    title: str
    markdown: Callable[..., str]
    charts: Callable[[dict[str, Any]], list[Chart]] = field(default=_no_charts)


_SECTIONS: dict[str, ReportSection] = {}


def register_section(task: str, section: ReportSection) -> None:
    """Render summaries whose `task` is `task` with `section` (a later registration replaces it)."""
    _SECTIONS[task] = section


def section_for(task: str) -> ReportSection | None:
    """The section registered for `task`, or None."""
    return _SECTIONS.get(task)
