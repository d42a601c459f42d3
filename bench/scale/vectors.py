"""`python -m bench.scale.vectors` (`make bench-scale-cache`): the document vectors of `bench.corpus`'s
rows, computed once and cached, so that `make bench-scale` loads 10^6 records without embedding them.

The first `--real` rows get the document tower's own vectors (the served engine, as ingestion runs
it), in chunk files written atomically: a stopped run resumes at the first missing chunk. The rows
past them, up to `--total`, get vectors built from the real ones so that the neighbourhood structure
HNSW sees stays the real one (i.i.d. random vectors would make its recall and latency unrealistic):

    synthetic = normalize(x_j + t * (x_m - x_j) + sigma * z)

with `x_j` a real vector drawn uniformly, `x_m` one of its `NEIGHBOURS` nearest real vectors (exact
search), `t` uniform in [0, `MAX_STEP`], `z` standard normal scaled so that the noise's length is
`NOISE` times the median distance from a real vector to its nearest neighbour. Every synthetic vector
thus lies among real ones, in the denser regions as often as the real rows do. Deterministic for a
`--seed`. The texts stay `bench.corpus`'s rows, so hybrid search has real text to rank.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.corpus import DEFAULT_DATA, rows
from twotower.text import format_document

log = logging.getLogger("bench.scale.vectors")
DEFAULT_CACHE = Path("/work/cache/scale")
CHUNK = 2048  # rows per real-vector chunk file: the unit of resumption
NEIGHBOURS = 10
MAX_STEP = 0.5
NOISE = 0.5
BLOCK = 4096  # rows per block of the exact neighbour search


def folders(data: str) -> list[Path]:
    return [Path(f) for f in data.split(",") if f]


def real_count(cache: Path) -> int:
    """Rows with real vectors in the cache (whole chunks, in order)."""
    n, i = 0, 0
    while (cache / "real" / f"{i:05d}.npy").exists():
        rows = len(np.load(cache / "real" / f"{i:05d}.npy", mmap_mode="r"))
        n, i = n + rows, i + 1
        if rows < CHUNK:  # a partial chunk ends the sequence
            break
    return n


def load_real(cache: Path, n: int | None = None) -> np.ndarray:
    have = real_count(cache)
    n = have if n is None else min(n, have)
    parts = [np.load(cache / "real" / f"{i:05d}.npy") for i in range(-(-n // CHUNK))]
    return np.vstack(parts)[:n] if parts else np.zeros((0, 0), np.float32)


def embed_real(cache: Path, data: str, n: int, weights_dir: Path, version: str) -> float:
    """Embed rows [real_count, n) in chunks; returns rows/s of this run (0 if nothing was left)."""
    from twotower.engine import available_cpus, open_encoder

    (cache / "real").mkdir(parents=True, exist_ok=True)
    start = real_count(cache)
    if start % CHUNK and start < n:  # a partial last chunk (an earlier, smaller --real) is redone
        start -= start % CHUNK
    if start >= n:
        return 0.0
    encoder = open_encoder(
        [weights_dir], version, engine="onnx", towers=("document",), threads=available_cpus()
    )
    texts = [format_document(r["text"], r["title"]) for r in rows(folders(data), n)]
    began = time.perf_counter()
    with tqdm(total=n, initial=start, desc="real vectors", unit="row") as bar:
        for first in range(start, n, CHUNK):
            vectors = np.vstack(
                [
                    encoder.encode_documents(texts[i : i + 256])
                    for i in range(first, min(first + CHUNK, n), 256)
                ]
            ).astype(np.float32)
            path = cache / "real" / f"{first // CHUNK:05d}.npy"
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            os.replace(tmp, path)  # a chunk file exists whole or not at all
            bar.update(len(vectors))
    encoder.close()
    return (n - start) / (time.perf_counter() - began)


def nearest(real: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each real vector's `k` nearest other real vectors (exact, cosine) and their distances."""
    ids = np.zeros((len(real), k), np.int64)
    dist = np.zeros((len(real), k), np.float32)
    for first in tqdm(range(0, len(real), BLOCK), desc="real neighbours", unit="block"):
        sims = real[first : first + BLOCK] @ real.T
        np.fill_diagonal(sims[:, first : first + BLOCK], -np.inf)
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        ids[first : first + BLOCK] = top
        dist[first : first + BLOCK] = 1.0 - np.take_along_axis(sims, top, axis=1)
    return ids, dist


def synthesize(real: np.ndarray, total: int, seed: int, out: Path) -> dict[str, float]:
    """Write rows [len(real), total) of the method in the module docstring to `out` (.npy)."""
    ids, dist = nearest(real, NEIGHBOURS)
    nn_dist = float(np.median(np.sqrt(2 * dist.min(axis=1).clip(0))))  # euclidean, unit vectors
    sigma = NOISE * nn_dist / np.sqrt(real.shape[1])
    n = total - len(real)
    vectors = np.lib.format.open_memmap(out.with_suffix(".tmp.npy"), "w+", np.float32, (n, real.shape[1]))
    rng = np.random.default_rng(seed)
    for first in tqdm(range(0, n, 65536), desc="synthetic vectors", unit="block"):
        size = min(65536, n - first)
        base = rng.integers(len(real), size=size)
        other = ids[base, rng.integers(NEIGHBOURS, size=size)]
        step = rng.uniform(0, MAX_STEP, size=(size, 1)).astype(np.float32)
        v = real[base] + step * (real[other] - real[base])
        v += rng.standard_normal(v.shape, dtype=np.float32) * np.float32(sigma)
        vectors[first : first + size] = v / np.linalg.norm(v, axis=1, keepdims=True)
    vectors.flush()
    del vectors
    os.replace(out.with_suffix(".tmp.npy"), out)
    return {"median_nn_distance": round(nn_dist, 4), "noise_sigma_per_dim": round(float(sigma), 6)}


def vectors(cache: Path, n: int) -> np.ndarray:
    """The vectors of the first `n` rows: real ones first, then the synthetic ones (memory-mapped)."""
    meta = json.loads((cache / "meta.json").read_text())
    real = load_real(cache, meta["real"])
    if n <= len(real):
        return real[:n]
    synth = np.load(cache / "synthetic.npy", mmap_mode="r")
    if len(real) + len(synth) < n:
        raise SystemExit(f"{cache} holds vectors for {len(real) + len(synth):,} rows, not {n:,}: build more")
    return np.vstack([real, synth[: n - len(real)]])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale.vectors", description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--real", type=int, default=100_000, help="rows embedded by the document tower")
    p.add_argument("--total", type=int, default=1_000_000, help="rows in all (the rest synthetic)")
    p.add_argument("--weights-dir", type=Path, default=Path("weights"), help="its LATEST, else the base")
    p.add_argument("--data", default=",".join(str(DEFAULT_DATA / c) for c in ("scifact", "npl")))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S")
    from bench.stack import served_weights

    args.cache.mkdir(parents=True, exist_ok=True)
    weights, version = served_weights(args.weights_dir, args.cache)
    meta_path = args.cache / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("version", version) != version or meta.get("data", args.data) != args.data:
        raise SystemExit(
            f"{args.cache} was built for {meta.get('version')} on {meta.get('data')}: use another --cache"
        )
    rate = embed_real(args.cache, args.data, args.real, weights, version)
    real = load_real(args.cache)
    meta.update({"version": version, "weights_dir": str(weights), "data": args.data, "real": len(real)})
    if rate:
        meta["real_rows_per_s"] = round(rate, 2)
        meta["real_cpus"] = len(os.sched_getaffinity(0))
    synth = args.cache / "synthetic.npy"
    built = meta.get("synthetic", {})
    if (
        built.get("from_real") != len(real)
        or built.get("total") != args.total
        or built.get("seed") != args.seed
    ):
        stats = synthesize(real, args.total, args.seed, synth)
        meta["synthetic"] = {"from_real": len(real), "total": args.total, "seed": args.seed, **stats}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log.info(
        "%s: %s real vectors (%s rows/s this run), %s synthetic, model %s",
        args.cache,
        f"{len(real):,}",
        f"{rate:.1f}" if rate else "none embedded",
        f"{args.total - len(real):,}",
        version,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
