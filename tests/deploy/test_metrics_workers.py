"""/metrics under real gunicorn with two uvicorn workers: whichever worker answers a scrape, it
counts every worker's requests (prometheus_client's multi-process mode, set up by the gunicorn
config); stale values of an earlier run are cleared at start; a dead worker's live gauges go. The
log lines, in gunicorn's configured format, carry the request id."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.stack import child_environment
from tests.conftest import ChromaServer, free_port
from tests.deploy.procs import resolve, running

# Gunicorn with two workers, one killed: `make test-stack`.
pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
HEALTHZ = {"service": "query", "method": "GET", "route": "/healthz", "status": "200"}


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout}s")
        time.sleep(0.2)


def live_gauge_pids(prom_dir: Path) -> set[int]:
    # One file per worker for the model-version gauge ("livemax"), removed when the worker dies.
    return {int(p.stem.rsplit("_", 1)[1]) for p in prom_dir.glob("gauge_livemax_*.db")}


def counted(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


class Gunicorn:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path, prom_dir: Path) -> None:
        self.proc, self.url, self.log, self.prom_dir = proc, url, log, prom_dir

    def access_pids(self, path: str) -> set[int]:
        """Worker pids that wrote an access line for `path` (the format starts with [pid])."""
        pattern = re.compile(rf'\[(\d+)\] INFO services\.access \[[^\]]+\]: \S+ "GET {re.escape(path)} ')
        return {int(m.group(1)) for m in pattern.finditer(self.log.read_text())}


@pytest.fixture
def gunicorn(tmp_path: Path, chroma_server: ChromaServer, published_base: Path) -> Iterator[Gunicorn]:
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    # A previous run's values must not be added to this run's.
    (prom_dir / "counter_999999.db").write_bytes(b"stale")
    port = free_port()
    settings = {
        "QUERY_HOST": "127.0.0.1",
        "QUERY_PORT": str(port),
        "QUERY_WORKERS": "2",
        # The base model as `make run` and the images publish it, for whichever engine is the default.
        "QUERY_WEIGHTS_DIR": str(published_base),
        "QUERY_CHROMA_HOST": chroma_server.host,
        "QUERY_CHROMA_PORT": str(chroma_server.port),
        "QUERY_COLLECTION_PREFIX": "workers",
        "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
    }
    env = child_environment(settings)
    argv = resolve(
        ["gunicorn", "-c", "services/query/gunicorn.conf.py", "services.query.main:create_app()"], env
    )
    log = tmp_path / "gunicorn.log"
    with running(argv, env, log) as proc:
        # Each worker records the served model version once its lifespan has loaded the model.
        wait_until(lambda: len(live_gauge_pids(prom_dir)) == 2, 300, "two workers serving", proc)
        yield Gunicorn(proc, f"http://127.0.0.1:{port}", log, prom_dir)


def test_metrics_add_up_across_workers(gunicorn: Gunicorn) -> None:
    assert not (gunicorn.prom_dir / "counter_999999.db").exists()
    url = gunicorn.url

    # Until both workers have answered some of them (each request on its own connection).
    sent = 0
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(8) as pool:
        while len(gunicorn.access_pids("/healthz")) < 2:
            assert time.monotonic() < deadline, "one worker took every request"
            codes = list(pool.map(lambda _: httpx.get(f"{url}/healthz").status_code, range(16)))
            assert codes == [200] * 16
            sent += 16

    # Every scrape counts all of them, whichever worker answers it.
    for _ in range(6):
        assert counted(url, "twotower_http_requests_total", **HEALTHZ) == sent
        assert counted(url, "twotower_http_request_duration_seconds_count", **HEALTHZ) == sent
    assert counted(url, "twotower_model_info", service="query") == 1

    # The request id is on the log line, in gunicorn's format; uvicorn's own access line is off.
    assert httpx.get(f"{url}/healthz", headers={"X-Request-ID": "workers-log-1"}).status_code == 200
    wait_until(lambda: "[workers-log-1]: " in gunicorn.log.read_text(), 10, "the access line", gunicorn.proc)
    line = next(x for x in gunicorn.log.read_text().splitlines() if "[workers-log-1]" in x)
    assert re.search(r'services\.access \[workers-log-1\]: \S+ "GET /healthz HTTP/1\.1" 200 [\d.]+ms$', line)
    assert not re.search(r' - "GET /healthz HTTP/1\.1" 200', gunicorn.log.read_text())

    # A killed worker: its live gauge is dropped (child_exit), its counts stay.
    victim = min(live_gauge_pids(gunicorn.prom_dir))
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: victim not in live_gauge_pids(gunicorn.prom_dir),
        30,
        "the dead worker's gauge gone",
        gunicorn.proc,
    )
    assert counted(url, "twotower_http_requests_total", **HEALTHZ) == sent + 1
