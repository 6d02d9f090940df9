"""The rubric of the thesis's Table 3: four criteria scored 1–5, every level described in Spanish.

People (`amauta eval grade`) and the LLM judge (`amauta eval judge`) grade with the same text, so their
scores can be compared (`amauta.judge.agreement`).
"""

from __future__ import annotations

CRITERIA = ("accuracy", "relevance", "coherence", "context")
# The JSON keys the (Spanish) judge prompt asks for, per criterion.
KEYS_ES = {"accuracy": "exactitud", "relevance": "relevancia", "coherence": "coherencia", "context": "contexto"}
NAMES_ES = {"accuracy": "Exactitud", "relevance": "Relevancia", "coherence": "Coherencia",
            "context": "Comprensión contextual"}

RUBRIC = {
    "accuracy": ("¿La información es correcta?", [
        "Incorrecta o inventada; contradice la respuesta de referencia o los hechos.",
        "Mayormente incorrecta; solo algún elemento acertado.",
        "Parcialmente correcta: mezcla datos correctos con algún error u omisión importante.",
        "Correcta en lo esencial, con imprecisiones menores que no cambian la respuesta.",
        "Completamente correcta y precisa; coincide con la referencia cuando la hay.",
    ]),
    "relevance": ("¿Responde a lo que se preguntó?", [
        "No responde a la pregunta: habla de otra cosa, la repite o está vacía.",
        "Apenas se relaciona con la pregunta.",
        "Responde solo en parte o se desvía bastante.",
        "Responde a la pregunta, con algo de relleno o algún aspecto menor sin cubrir.",
        "Responde directa y completamente, sin relleno.",
    ]),
    "coherence": ("¿Está bien escrita, es lógica y está en español?", [
        "Incoherente, ilegible o en otro idioma.",
        "Difícil de seguir: contradicciones, frases cortadas o mucho texto repetido.",
        "Comprensible, pero con repeticiones, saltos lógicos o mezcla de idiomas.",
        "Clara, con errores leves de redacción o de orden.",
        "Clara, ordenada y lógica, en un español correcto y natural.",
    ]),
    "context": ("¿Entiende el contexto: la conversación previa, los datos que dio el usuario y las "
                "instrucciones de formato, extensión y tono?", [
        "Ignora por completo el contexto y las instrucciones.",
        "Apenas tiene en cuenta el contexto; contradice lo dicho antes o lo que se pidió.",
        "Usa parte del contexto, pero olvida un dato previo o una instrucción importante.",
        "Usa bien el contexto, con un olvido menor.",
        "Usa todo el contexto (turnos previos, datos del usuario) y sigue todas las instrucciones.",
    ]),
}


def rubric_text() -> str:
    """The rubric in Spanish, every level described (shown to the judge and to human graders)."""
    lines = []
    for criterion in CRITERIA:
        question, levels = RUBRIC[criterion]
        lines.append(f"{NAMES_ES[criterion]} («{KEYS_ES[criterion]}»): {question}")
        lines += [f"  {score}: {text}" for score, text in enumerate(levels, start=1)]
    return "\n".join(lines)
