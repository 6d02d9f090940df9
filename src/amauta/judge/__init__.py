"""amauta.judge: answers graded 1–5 on the thesis's rubric, by an LLM judge and by people.

`rubric` (the criteria and their Spanish descriptions, shared by both), `judge` (the judge and the
`amauta eval judge` stage), `candidates` (prompt sets and the answers to grade), `grade` (people),
`agreement` (judge vs people) and `tables` (the same rows in the terminal and in the report).
"""
