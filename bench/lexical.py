"""`python -m bench.lexical`: what the hybrid mode's BM25 step costs per search, in-process.

    python -m bench.lexical --data ../shared/data/scifact

For each of `--queries` test queries, `twotower.lexical.rank_by_bm25` over `--candidates` texts
drawn from the corpus as the query service sees them (a document's title and a passage-sized
stretch of its text), the candidates of consecutive queries overlapping as little as a large
corpus makes them. Each repetition runs in a fresh thread, so with a fresh stemmer and its empty
cache, as a new pool thread of the service starts. Logs ms per search (the median repetition).
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import threading
import time
from pathlib import Path

from twotower.beir import load_corpus, load_queries
from twotower.lexical import rank_by_bm25

log = logging.getLogger("bench.lexical")


def measure(data: Path, queries: int, candidates: int, repeats: int, seed: int = 0) -> list[float]:
    corpus = list(load_corpus(data).values())
    texts = load_queries(data)
    rng = random.Random(seed)
    asked = rng.sample(sorted(texts.values()), min(queries, len(texts)))
    pools = [
        [f"{d.title} {d.text}"[: rng.randint(600, 1400)] for d in rng.sample(corpus, candidates)]
        for _ in asked
    ]
    timings: list[float] = []

    def run() -> None:
        started = time.perf_counter()
        for query, pool in zip(asked, pools, strict=True):
            rank_by_bm25(query, pool)
        timings.append((time.perf_counter() - started) * 1000 / len(asked))

    for _ in range(repeats):
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    return timings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lexical", description=__doc__)
    p.add_argument("--data", type=Path, required=True, help="BEIR folder (corpus and queries)")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--candidates", type=int, default=100, help="as QUERY_HYBRID_DEPTH")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    timings = measure(args.data, args.queries, args.candidates, args.repeats)
    log.info(
        "rank_by_bm25 over %d candidates: %.2f ms per search (median of %d: %s)",
        args.candidates,
        statistics.median(timings),
        len(timings),
        ", ".join(f"{t:.2f}" for t in timings),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
