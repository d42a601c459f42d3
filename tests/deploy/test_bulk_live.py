"""`make import` and a rollout's backfill fanned out over 2 worker processes, on a live stack
(gunicorn services, a real Chroma server, the real model) while a writer posts, updates and deletes
and a reader searches: the import adds the corpus without replacing what the writer wrote, the
rollout ends with the target holding exactly every acknowledged write, and no search fails.
(The 100k-document version with timings: `python -m bench.bulk`, docs/scaling.md.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.deploy.test_rollout_live import (  # noqa: F401 - fixtures
    KEY,
    Live,
    Traffic,
    check_index,
    live,
    served_and_other,
    service_versions,
    two_versions,
)
from twotower.corpus import open_corpus

pytestmark = pytest.mark.stack
DOCS = 2000


def run(stack: Live, module: str, *args: str) -> str:
    argv = [sys.executable, "-m", module, *args, "--weights-dir", str(stack.weights)]
    argv += [
        "--chroma-port",
        str(stack.chroma_port),
        "--engine",
        "onnx",
        "--workers",
        "2",
        "--batch-size",
        "32",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def test_import_then_rollout_fanned_out_under_writes_and_searches(
    live: Live,  # noqa: F811
    two_versions: tuple[Path, str, str],  # noqa: F811
    scifact_dir: Path,
    tmp_path: Path,
) -> None:
    _, a, b = two_versions
    path = tmp_path / "corpus.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.corpus",
            "--n",
            str(DOCS),
            "--out",
            str(path),
            "--data",
            str(scifact_dir),
        ],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    corpus = {d["id"]: d["text"] for d in open_corpus(str(path)).documents}
    touched = list(corpus)[:200]  # the writer updates these during the import, and deletes them after
    source, target = served_and_other(live, a, b)
    seed = {"id": "seed", "text": "posted first, so that searches have a collection to search"}
    posted = httpx.post(
        f"{live.urls['ingest']}/documents", json={"documents": [seed]}, headers={"X-API-Key": KEY}
    )
    assert posted.status_code == 200, posted.text

    # Deletes of corpus ids wait for the rollout: an import may add again a document deleted
    # before the import reached it (docs/operations.md says so).
    with Traffic(live, touched, seed=5, deletes=False) as traffic:
        log = run(live, "ops.bulk_import", "--corpus", str(path))
    assert "in 8 of 8 shards" in log, log[-2000:]
    assert not traffic.search_errors, traffic.search_errors[:3]
    expected: dict[str, str | None] = {**corpus, seed["id"]: seed["text"], **traffic.expected}
    check_index(live, source, expected, traffic.unsettled)

    with Traffic(live, touched, seed=6) as traffic:
        log = run(live, "ops.rollout", target)
    assert "8 of 8 shards" in log and f"serving {target}" in log, log[-2000:]
    assert traffic.writes > 0 and traffic.searches > 0
    assert not traffic.search_errors, traffic.search_errors[:3]
    expected.update(traffic.expected)
    check_index(live, target, expected, traffic.unsettled)
    assert service_versions(live) == {target}
