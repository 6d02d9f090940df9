"""`amauta report` over a chat demo folder: a table of answers per strategy, with its tokens/s."""

from __future__ import annotations

import re

from amauta.chat import demo
from amauta.report.report import ReportConfig, build, to_html


def test_the_report_shows_each_strategys_answers_and_speed(tmp_path):
    folder = demo.run(demo.DemoConfig(model="tiny-llama", max_new_tokens=3, prompts=["¿Qué es el IVA?"],
                                      strategies=["greedy", "sampling"], out=str(tmp_path / "chat")))
    markdown, _ = build(ReportConfig(run_dirs=[str(folder)], out=str(tmp_path / "report")))
    assert "## Decoding strategies (chat demo)" in markdown
    for strategy in ("greedy", "sampling"):
        heading = re.search(rf"### {strategy} · ([\d.]+) tokens/s \((\d+) tokens in", markdown)
        assert heading and float(heading.group(1)) > 0 and 1 <= int(heading.group(2)) <= 3
    rows = [line for line in markdown.splitlines() if line.startswith("| ¿Qué es el IVA? |")]
    assert len(rows) == 2  # one answer per strategy
    assert f"`{folder / 'generations.jsonl'}`" in markdown  # where every answer comes from


def test_an_answer_stays_one_cell_of_text(tmp_path):
    summary = {"task": "chat.demo", "model": "m", "strategies": {"greedy": {"tokens": 4, "seconds": 1.0,
                                                                            "tokens_per_second": 4.0}},
               "answers": [{"prompt": "p", "strategy": "greedy", "text": "<script>x</script> a|b\nc",
                            "tokens": 4, "seconds": 1.0, "tokens_per_second": 4.0}]}
    markdown = demo.report_markdown(summary)
    assert "| p | &lt;script&gt;x&lt;/script&gt; a\\|b c | 4 | 4.0 |" in markdown
    assert "<script>" not in to_html(markdown, {}, "t")
