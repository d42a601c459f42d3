"""`make run` end to end: python -m deploy.local.stack, on free ports and a temporary data directory.

It must start Chroma, ingestion and query from docker-compose.yml, load a corpus into the empty
index, serve search, accept new documents, restart a service that dies once it is serving, and
stop every process on Ctrl-C; a service that dies while starting must take the stack down with a
non-zero exit and that service's last log lines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.stack import children
from tests.conftest import free_port

# The whole local stack as processes: `make test-stack` (the slow one: `make test-slow`).
pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "stack-test-key"
CORPUS = [
    {
        "_id": "volcano",
        "title": "Volcanoes",
        "text": "A volcano is a rupture in the crust through which lava erupts.",
    },
    {
        "_id": "bread",
        "title": "Baking bread",
        "text": "Bread dough rises because yeast ferments sugars into gas.",
    },
    {
        "_id": "orbit",
        "title": "Orbits",
        "text": "The Moon orbits the Earth roughly once every twenty-seven days.",
    },
]


@dataclass
class Launch:
    proc: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"stack exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout}s:\n{self.output()[-4000:]}")
            time.sleep(0.5)


def launch(tmp: Path, *extra: str) -> Launch:
    ports = {"query": free_port(), "ingest": free_port(), "chroma": free_port()}
    env = {**os.environ, "INGEST_API_KEY": API_KEY}  # given, so no .env is created in the checkout
    log = tmp / "stack.log"
    argv = [
        sys.executable,
        "-m",
        "deploy.local.stack",
        *("--query-port", str(ports["query"]), "--ingest-port", str(ports["ingest"])),
        *("--chroma-port", str(ports["chroma"]), "--data-dir", str(tmp / "data")),
        *("--weights-dir", str(tmp / "weights"), *extra),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Launch(proc, log, ports)


def command(pid: int) -> str:
    """Which service a child of the stack is: chroma, ingest or query (from its command line)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    if any(a.endswith("chroma") for a in argv[:2]):
        return "chroma"
    return next(name for name in ("ingest", "query") if any(f"services.{name}.main" in a for a in argv))


def search(query_url: str, text: str) -> str | None:
    """The id of the first hit, or None while the query service cannot answer."""
    try:
        response = httpx.post(f"{query_url}/search", json={"query": text, "k": 1}, timeout=30)
    except httpx.HTTPError:
        return None
    return response.json()["results"][0]["id"] if response.status_code == 200 else None


def eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def stop_at_end() -> Iterator[list[Launch]]:
    launches: list[Launch] = []
    yield launches
    for launched in launches:
        if launched.proc.poll() is None:
            launched.proc.send_signal(signal.SIGINT)
            try:
                launched.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                launched.proc.kill()


# The whole stack, started as `make run` starts it (publishing the base model first), with two
# restarts: about a minute on 2 cores. CI runs it with the other slow tests (`make test-slow`).
@pytest.mark.slow
def test_stack_serves_search_and_ctrl_c_stops_everything(tmp_path: Path, stop_at_end: list[Launch]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    stack = launch(tmp_path, "--corpus", str(corpus))
    stop_at_end.append(stack)
    stack.wait_for("serving search", timeout=420)
    query = f"http://127.0.0.1:{stack.ports['query']}"
    ingest = f"http://127.0.0.1:{stack.ports['ingest']}"

    out = stack.output()
    for name in ("chroma", "ingest", "query"):
        assert f"{name} |" in out  # each service's log, prefixed
    assert f"curl -s {query}/search" in out and f"X-API-Key: {API_KEY}" in out
    assert (tmp_path / "data" / "chroma").is_dir()  # Chroma persists under --data-dir

    assert httpx.get(f"{ingest}/stats").json()["count"] == len(CORPUS)
    hits = httpx.post(f"{query}/search", json={"query": "molten lava eruption", "k": 3}).json()["results"]
    assert hits[0]["id"] == "volcano" and len(hits) == 3

    new = {
        "documents": [{"id": "tea", "text": "Green tea is made from unoxidized leaves of Camellia sinensis."}]
    }
    assert (
        httpx.post(f"{ingest}/documents", json=new, headers={"X-API-Key": API_KEY}, timeout=60).status_code
        == 200
    )
    hits = httpx.post(f"{query}/search", json={"query": "how is green tea made", "k": 1}).json()["results"]
    assert hits[0]["id"] == "tea"

    # A service that dies is restarted while the others keep serving: Chroma (the services
    # reconnect on their own), then the query service (its gunicorn master, killed outright).
    before = {command(pid): pid for pid in children(stack.proc.pid)}
    assert set(before) == {"chroma", "ingest", "query"}
    for name in ("chroma", "query"):
        os.kill(before[name], signal.SIGKILL)
        stack.wait_for(f"{name} | restarted (restart 1)", timeout=60)
        assert eventually(lambda: search(query, "how is green tea made") == "tea", timeout=300), (
            stack.output()[-3000:]
        )
    after = {command(pid): pid for pid in children(stack.proc.pid)}
    assert after["ingest"] == before["ingest"]  # never stopped
    assert after["chroma"] != before["chroma"] and after["query"] != before["query"]

    services = children(stack.proc.pid)
    assert len(services) == 3
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=90) == 0
    assert not [pid for pid in services if alive(pid)]
    assert "stopping all services" in stack.output()


def test_a_service_that_dies_while_starting_stops_the_stack_with_its_log_tail(
    tmp_path: Path, stop_at_end: list[Launch], published_base: Path
) -> None:
    shutil.copytree(published_base, tmp_path / "weights")  # nothing to publish first: straight to Chroma
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "chroma").write_text("not a directory")  # Chroma cannot start on this
    stack = launch(tmp_path)
    stop_at_end.append(stack)
    assert stack.proc.wait(timeout=120) != 0
    out = stack.output()
    assert "chroma exited with status" in out and "Its last lines:" in out
    assert "Error creating Frontend Config" in out.split("Its last lines:", 1)[1]  # chroma's own words
    assert "serving search" not in out


def test_a_busy_port_is_refused_before_anything_starts(tmp_path: Path, stop_at_end: list[Launch]) -> None:
    with socket.socket() as busy:
        port = free_port()
        busy.bind(("127.0.0.1", port))
        busy.listen()
        stack = launch(tmp_path, "--query-port", str(port))
        stop_at_end.append(stack)
        assert stack.proc.wait(timeout=60) == 1
    assert f"port {port} (query) is in use" in stack.output()
    assert not (tmp_path / "data").exists()
