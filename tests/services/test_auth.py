"""INGEST_API_KEY set: writes need X-API-Key (401 otherwise), reads stay open; the loader sends it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, ChromaServer
from tests.services.conftest import Api, ingest_service, post_docs

KEY = "s3cret-key"
DOC = {"id": "auth-1", "text": "Only callers with the key may write."}


@pytest.fixture(scope="module")
def locked(chroma_server: ChromaServer, base_weights: Path) -> Iterator[Api]:
    with ingest_service(chroma_server, base_weights, "auth", api_key=KEY) as api:
        yield api


@pytest.mark.parametrize(("headers", "says"), [({}, "missing"), ({"X-API-Key": "wrong"}, "invalid")])
def test_writes_without_the_key_are_401(locked: Api, headers: dict[str, str], says: str) -> None:
    posted = post_docs(locked, DOC, headers=headers)
    assert posted.status_code == 401 and says in posted.json()["detail"]
    deleted = locked.http.delete("/documents/auth-1", headers=headers)
    assert deleted.status_code == 401
    assert locked.http.get("/documents/auth-1").status_code == 404  # nothing was stored


def test_the_key_opens_writes_and_reads_stay_open(locked: Api) -> None:
    assert post_docs(locked, DOC, headers={"X-API-Key": KEY}).status_code == 200
    assert locked.http.get("/documents/auth-1").status_code == 200
    assert locked.http.get("/stats").status_code == 200
    assert locked.http.delete("/documents/auth-1", headers={"X-API-Key": KEY}).status_code == 200


def run_loader(api: Api, *args: str, env_key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "INGEST_API_KEY"}
    env["PYTHONPATH"] = f"{ROOT}:{ROOT / 'shared'}"
    if env_key:
        env["INGEST_API_KEY"] = env_key
    return subprocess.run(
        [sys.executable, "-m", "services.loader", "--url", api.url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


def test_loader_sends_the_key_and_does_not_retry_a_401(locked: Api) -> None:
    refused = run_loader(locked, "--limit", "2")
    assert refused.returncode == 1
    assert "HTTP 401: missing X-API-Key header" in refused.stderr
    assert "retry" not in refused.stderr  # a 4xx is the request's fault: no retries

    loaded = run_loader(locked, "--limit", "2", env_key=KEY)
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 2 documents" in loaded.stderr
    assert locked.http.get("/documents/assert").status_code == 200
