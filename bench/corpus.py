"""Corpora of any size from real text: the sentences of BEIR abstracts, and pairs of them past that.

`python -m bench.corpus --n 100000 --out corpus.jsonl` writes JSONL rows the loader and the
ingestion API read (`id`, `title`, `text`, `metadata`). The rows, in order, until `n`:

1. every sentence of at least 5 words of every abstract, once (SciFact and NPL give about 56,500);
2. two consecutive sentences of the same abstract (real text as written);
3. two sentences of the same abstract, further apart;
4. a sentence followed by a sentence of another abstract of the same corpus, the pairing fixed by
   a seeded shuffle, so the same `n` always gives the same corpus.

Every row's metadata holds its corpus, the abstract it comes from and its kind (1-4), so filters
at scale have something real to select on. The rows are short (a sentence or two, about 160-550
characters): one passage each, which keeps re-embedding a large corpus affordable on a CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from twotower.beir import iter_corpus, load_queries

log = logging.getLogger("bench.corpus")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_WORDS = 5


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text) if len(s.split()) >= MIN_WORDS]


def _abstracts(folders: Sequence[Path]) -> list[tuple[str, str, str, list[str]]]:
    """(corpus, abstract id, title, sentences) of every abstract with at least one sentence."""
    out = []
    for folder in folders:
        for doc in iter_corpus(folder):
            parts = sentences(doc.text)
            if parts:
                out.append((folder.name, doc.id, doc.title, parts))
    return out


def rows(folders: Sequence[Path], n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The first `n` rows of the sequence the module docstring describes."""
    abstracts = _abstracts(folders)
    count = 0

    def row(kind: int, source: tuple[str, str, str, list[str]], text: str) -> dict[str, Any]:
        corpus, parent, title, _ = source
        return {
            "id": f"scale-{count:08d}",
            "title": title,
            "text": text,
            "metadata": {"corpus": corpus, "abstract": parent, "kind": kind},
        }

    def kinds() -> Iterator[tuple[int, tuple[str, str, str, list[str]], str]]:
        for a in abstracts:
            for s in a[3]:
                yield 1, a, s
        for a in abstracts:
            for s, t in zip(a[3], a[3][1:], strict=False):
                yield 2, a, f"{s} {t}"
        for a in abstracts:
            for i, s in enumerate(a[3]):
                for t in a[3][i + 2 :]:
                    yield 3, a, f"{s} {t}"
        rng = random.Random(seed)
        peers: dict[str, list[tuple[str, str, str, list[str]]]] = {}
        for a in abstracts:
            peers.setdefault(a[0], []).append(a)
        pairable = [a for a in abstracts if len(peers[a[0]]) > 1]
        while pairable:  # kind 4 never runs out: each round pairs every abstract with another
            for a in pairable:
                b = a
                while b is a:
                    b = rng.choice(peers[a[0]])
                yield 4, a, f"{rng.choice(a[3])} {rng.choice(b[3])}"

    for kind, source, text in kinds():
        if count >= n:
            return
        yield row(kind, source, text)
        count += 1


def queries(folders: Sequence[Path]) -> list[str]:
    """Every query of the folders (SciFact and NPL: 1,202), real questions to measure recall with."""
    return [q for folder in folders for q in load_queries(folder).values()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, required=True, help="rows to write")
    parser.add_argument("--out", required=True, help="JSONL file to write")
    parser.add_argument(
        "--data",
        default=",".join(str(DEFAULT_DATA / c) for c in ("scifact", "npl")),
        help="comma-separated BEIR folders (default: SciFact and NPL beside the project)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S")
    folders = [Path(f) for f in args.data.split(",") if f]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = [0] * 5
    with out.open("w", encoding="utf-8") as f:
        for r in tqdm(rows(folders, args.n, args.seed), total=args.n, desc="rows", unit="row"):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            counts[r["metadata"]["kind"]] += 1
    kinds = ", ".join(f"kind {k}: {c:,}" for k, c in enumerate(counts) if k)
    log.info("%s rows to %s: %s", f"{sum(counts):,}", out, kinds)


if __name__ == "__main__":
    main()
