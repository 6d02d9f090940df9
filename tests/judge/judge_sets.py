"""The small prompt set the judge tests share: one single-turn item with a reference, one two-turn item."""

SET = """name: mini
system: Responde en español.
items:
  - id: q1
    category: basic
    prompt: ¿Cuál es la tarifa general del IVA?
    reference: 15 %
  - id: s1
    category: contextual
    turns: ["Me llamo Lucía.", "¿Cómo me llamo?"]
"""
