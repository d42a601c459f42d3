"""Hostile requests against both services as they are deployed (gunicorn, its config, uvicorn
workers): a 1 MB and a 128 MB header are answered (431 or closed) at once while /healthz stays fast,
and nothing a client sends can forge a log line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.local.stack import child_environment
from deploy.podman.probes import REFUSED, healthz_timed, huge_header
from tests.conftest import ChromaServer, free_port, wait_http
from tests.deploy.procs import resolve, running

pytestmark = pytest.mark.stack

PROBE_BOUND_S = 0.1


class Service:
    def __init__(self, name: str, port: int, log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module", params=["ingest", "query"])
def service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    chroma_server: ChromaServer,
    published_base: Path,
) -> Iterator[Service]:
    name: str = request.param
    prefix = name.upper() + "_"
    port = free_port()
    settings = {
        f"{prefix}HOST": "127.0.0.1",
        f"{prefix}PORT": str(port),
        f"{prefix}WORKERS": "1",
        f"{prefix}WEIGHTS_DIR": str(published_base),
        f"{prefix}CHROMA_HOST": chroma_server.host,
        f"{prefix}CHROMA_PORT": str(chroma_server.port),
        f"{prefix}COLLECTION_PREFIX": "hostile",
    }
    env = child_environment(settings)
    argv = resolve(
        ["gunicorn", "-c", f"services/{name}/gunicorn.conf.py", f"services.{name}.main:create_app()"], env
    )
    log = tmp_path_factory.mktemp(name) / "gunicorn.log"
    with running(argv, env, log) as proc:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=300, proc=proc)
        yield Service(name, port, log)


def test_huge_headers_are_refused_at_once_and_healthz_stays_fast(service: Service) -> None:
    path = "/documents" if service.name == "ingest" else "/search"
    sent = 0
    with healthz_timed(service.url) as healthz:
        while sent < 4 or len(healthz[service.url]) < 20:  # the probes overlap the headers' arrival
            size = (1 << 20, 128_000_000)[sent % 2]
            answer, seconds, all_out = huge_header(service.port, path, size)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer
            assert seconds < 2, f"{size} bytes: {seconds:.3f}s"  # the client's view, scheduling included
            assert size < 1e8 or not all_out, "128 MB sent before the answer"
            sent += 1
            assert sent < 1000, "no /healthz answered meanwhile"
    probes = healthz[service.url]
    # The server's view: the time from a head's first byte to its 431, which the worker logs.
    refusals = [float(m) for m in REFUSED.findall(service.log.read_text())]
    assert len(refusals) >= sent and max(refusals) < PROBE_BOUND_S * 1000, refusals
    # One late probe is the shared host's scheduling, not the service (a head once held it 22 s).
    assert sorted(probes)[-2] < PROBE_BOUND_S and max(probes) < 1, sorted(probes)[-5:]


def test_head_healthz(service: Service) -> None:
    assert httpx.head(f"{service.url}/healthz").status_code == 200


@pytest.mark.parametrize("newline", ["%0a", "%0d%0a", "%0d", "%e2%80%a8"])
def test_no_log_line_can_be_forged(service: Service, newline: str) -> None:
    forged = f"ERROR forged-{service.name}-{newline.replace('%', '')}"
    path = f"/documents/x{newline}{forged.replace(' ', '%20')}"
    httpx.get(
        f"{service.url}{path}?q=1{newline}{forged.replace(' ', '%20')}", headers={"X-Request-ID": "forge-1"}
    )
    deadline = time.monotonic() + 10
    while forged not in service.log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = service.log.read_text(errors="replace").splitlines()
    assert any(forged in line for line in lines), "the request was not logged"
    # The access line holds the whole path, its line break escaped; no line begins with the forgery.
    assert not [line for line in lines if line.startswith(forged)]
    assert all(line[:4].isdigit() for line in lines if forged in line)
