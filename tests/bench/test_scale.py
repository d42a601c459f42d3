"""bench.scale: exact search and recall (ties counted), synthetic vectors that keep the real ones'
neighbourhoods, and, on a real stack, the whole benchmark at a small size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.scale import measure, vectors


def unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_top_is_brute_force_across_blocks() -> None:
    rng = np.random.default_rng(0)
    docs, queries = unit(rng, 1000), unit(rng, 20)
    got = measure.exact_top(queries, docs, block=97)  # many blocks, merged
    want = np.argsort(-(queries @ docs.T), axis=1)[:, : measure.K]
    assert (got == want).all()


def test_recall_counts_the_exact_ten_and_their_ties_only() -> None:
    rng = np.random.default_rng(1)
    docs = unit(rng, 200)
    docs = np.vstack([docs, docs[:50]])  # rows 200-249 repeat rows 0-49: exact ties
    queries = unit(rng, 5)
    truth = measure.Truth.of(queries, docs)
    exact = measure.exact_top(queries, docs)
    ids = [[measure.row_id(int(i)) for i in row] for row in exact]
    assert truth.recall(ids) == 1.0
    twins = [[measure.row_id(int(i) + 200 if i < 50 else int(i)) for i in row] for row in exact]
    assert truth.recall(twins) == 1.0  # a repeated vector is as near as its twin
    far = np.argsort(queries @ docs.T, axis=1)[:, : measure.K]  # the farthest ten
    worst = [[measure.row_id(int(i)) for i in row] for row in far]
    assert truth.recall(worst) == 0.0
    half = [row[:5] + w[:5] for row, w in zip(ids, worst, strict=True)]
    assert truth.recall(half) == 0.5


def test_synthetic_vectors_lie_among_the_real_ones(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    centres = unit(rng, 40, 32)
    real = centres[rng.integers(40, size=2000)] + 0.15 * unit(rng, 2000, 32)  # clustered, like text
    real = (real / np.linalg.norm(real, axis=1, keepdims=True)).astype(np.float32)
    stats = vectors.synthesize(real, 12_000, seed=3, out=tmp_path / "synthetic.npy")
    synth = np.load(tmp_path / "synthetic.npy")
    assert synth.shape == (10_000, 32) and np.allclose(np.linalg.norm(synth, axis=1), 1, atol=1e-5)
    again = tmp_path / "again.npy"
    vectors.synthesize(real, 12_000, seed=3, out=again)
    assert (np.load(again) == synth).all()  # deterministic
    nearest_real = (synth @ real.T).max(axis=1)
    random_ones = (unit(rng, 1000, 32) @ real.T).max(axis=1)
    # Each synthetic vector is about as close to a real one as real vectors are to each other,
    # far closer than i.i.d. random vectors are.
    real_nn = 1 - stats["median_nn_distance"] ** 2 / 2
    assert np.median(nearest_real) >= real_nn
    assert np.median(nearest_real) > np.median(random_ones) + 0.3
    # ...and no two are the same vector.
    assert len(np.unique(synth.round(6), axis=0)) == len(synth)


def test_real_vectors_resume_from_whole_chunks(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    chunk = np.ones((vectors.CHUNK, 4), np.float32)
    np.save(tmp_path / "real" / "00000.npy", chunk)
    np.save(tmp_path / "real" / "00001.npy", chunk[:10])
    assert vectors.real_count(tmp_path) == vectors.CHUNK + 10
    assert vectors.load_real(tmp_path, 5).shape == (5, 4)


@pytest.mark.stack  # builds a cache with the real document tower, then Chroma and both services
def test_the_benchmark_runs_end_to_end(published_base: Path, tmp_path: Path, scifact_dir: Path) -> None:
    from bench.scale import __main__ as scale

    cache = tmp_path / "cache"
    data = str(scifact_dir)
    assert (
        vectors.main(
            [
                "--cache",
                str(cache),
                "--real",
                "300",
                "--total",
                "900",
                "--weights-dir",
                str(published_base),
                "--data",
                data,
            ]
        )
        == 0
    )
    out, doc = tmp_path / "scale.json", tmp_path / "scaling.md"
    args = ["--cache", str(cache), "--sizes", "400,900", "--queries", "50", "--latency-queries", "10"]
    assert scale.main([*args, "--ef-sweep", "10,40", "--out", str(out), "--doc", str(doc)]) == 0
    results = json.loads(out.read_text())
    big = results["sizes"]["900"]
    assert big["recall_index"]["recall_at_10"] >= 0.9
    assert big["kill9"]["count"] == 900 and big["kill9"]["ids_missing"] == 0
    assert big["kill9"]["sample_wrong_vector"] == 0 and big["kill9"]["last_batch_wrong_text"] == 0
    assert [p["applied"] for p in big["ef_sweep"]] == [10, 40]
    for at in results["sizes"].values():
        assert at["documents"]["restored"] and at["recall_http"]["errors"] == 0
        assert all(s["errors"] == 0 for s in at["search"].values())
    assert "| 900 |" in doc.read_text()
