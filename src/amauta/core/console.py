"""The one place commands make a rich console: on a terminal, rich's own; piped, rows stay whole.

When stdout is not a terminal, rich assumes 80 columns and squeezes every table into them, wrapping
names mid-word, so `amauta models | grep llama2-7b-chat` found nothing (the row read `llama2-` /
`7b-chat`). Piped or redirected, Amauta's consoles are as wide as any row needs instead, so each table
row stays on one line; rules, which would fill the whole width, stay 80 columns. An explicit `width=` or
a `COLUMNS` variable in the environment still decides.

    console = make_console()            # stdout
    console = make_console(stderr=True)  # progress and messages
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

PIPED_WIDTH = 10_000  # wider than any row a command prints: nothing wraps
RULE_WIDTH = 80


class AmautaConsole(Console):
    """rich's Console that never wraps a table row when its output is not a terminal."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.piped = (kwargs.get("width") is None and not os.environ.get("COLUMNS")
                      and not self.is_terminal and not self.is_jupyter)
        if self.piped:
            self.width = PIPED_WIDTH

    def rule(self, title: Any = "", *, characters: str = "─", style: Any = "rule.line", align: Any = "center") -> None:
        """A horizontal line; piped, one of `RULE_WIDTH` columns rather than the console's full width."""
        if not self.piped:
            return super().rule(title, characters=characters, style=style, align=align)
        from rich.rule import Rule

        self.print(Rule(title=title, characters=characters, style=style, align=align), width=RULE_WIDTH)
        return None


def make_console(*, stderr: bool = False, **kwargs: Any) -> Console:
    """A console for a command's output (`stderr=True` for progress and messages); other arguments as rich's."""
    return AmautaConsole(stderr=stderr, **kwargs)
