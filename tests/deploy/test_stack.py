"""`make run` end to end: python -m deploy.local.stack, on free ports and a temporary data directory.

A first run publishes the base model quietly, with a progress line, starts Chroma, ingestion and
query from docker-compose.yml, reports "serving search" only once search answers with results, and
stops every process on Ctrl-C; a service that dies while starting takes the stack down, non-zero.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
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
    {"_id": "volcano", "text": "A volcano is a rupture in the crust through which lava erupts."},
    {"_id": "bread", "text": "Bread dough rises because yeast ferments sugars into gas."},
    {"_id": "orbit", "text": "The Moon orbits the Earth roughly once every twenty-seven days."},
] + [
    {"_id": f"note-{i}", "text": f"Note {i} about lighthouse keeper number {i} and the sea."}
    for i in range(30)
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


def launch(tmp: Path, *extra: str, **environ: str) -> Launch:
    ports = {"query": free_port(), "ingest": free_port(), "chroma": free_port()}
    env = {**os.environ, "INGEST_API_KEY": API_KEY, **environ}  # a key given: no .env in the checkout
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


@pytest.mark.stack
def test_a_first_run_is_quiet_and_reports_search_only_once_it_has_results(
    tmp_path: Path, stop_at_end: list[Launch]
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    stack = launch(tmp_path, "--corpus", str(corpus))  # no weights yet: the base model is exported
    stop_at_end.append(stack)
    stack.wait_for("serving search", timeout=600)
    query = f"http://127.0.0.1:{stack.ports['query']}"
    hits = httpx.post(f"{query}/search", json={"query": "molten lava eruption", "k": 3}, timeout=30)
    assert hits.status_code == 200 and hits.json()["results"], hits.text

    out = stack.output()
    assert out.index("preparing the model") < out.index("serving search")
    assert "Quantization parameters" not in out and "pre-processing before quantization" not in out
    for name in ("chroma", "ingest", "query"):
        assert re.search(rf"{name} +\|", out)  # each service's log, prefixed
    assert f"curl -s {query}/search" in out and f"X-API-Key: {API_KEY}" in out
    assert (tmp_path / "data" / "chroma").is_dir()  # Chroma persists under --data-dir
    ingest = f"http://127.0.0.1:{stack.ports['ingest']}"
    stack.wait_for("the whole corpus is loaded", timeout=300)
    assert httpx.get(f"{ingest}/stats").json()["count"] == len(CORPUS)
    hits = httpx.post(f"{query}/search", json={"query": "molten lava eruption", "k": 3}, timeout=30)
    assert hits.json()["results"][0]["id"] == "volcano"

    services = children(stack.proc.pid)
    assert len(services) == 3
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=90) == 0
    assert not [pid for pid in services if alive(pid)]
    assert "all services stopped" in stack.output()


@pytest.mark.stack
def test_limit_0_loads_nothing_and_the_callers_settings_reach_the_services(
    tmp_path: Path, stop_at_end: list[Launch], published_base: Path
) -> None:
    shutil.copytree(published_base, tmp_path / "weights")
    stack = launch(tmp_path, "--limit", "0", QUERY_ONNX_VARIANT="fp32", QUERY_WORKERS="1")
    stop_at_end.append(stack)
    stack.wait_for("serving search", timeout=600)
    assert httpx.get(f"http://127.0.0.1:{stack.ports['ingest']}/stats").json()["count"] == 0
    out = stack.output()
    # A variable compose does not set (QUERY_ONNX_VARIANT) and one it defaults (QUERY_WORKERS).
    assert set(re.findall(r"onnx query tower of \w+ loaded \((\w+)", out)) == {"fp32"}  # default: int8
    assert len(set(re.findall(r"query .*Booting worker with pid: (\d+)", out))) == 1


def test_a_service_that_dies_while_starting_stops_the_stack(
    tmp_path: Path, stop_at_end: list[Launch], published_base: Path
) -> None:
    shutil.copytree(published_base, tmp_path / "weights")  # nothing to publish first: straight to Chroma
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "chroma").write_text("not a directory")  # Chroma cannot start on this
    stack = launch(tmp_path)
    stop_at_end.append(stack)
    assert stack.proc.wait(timeout=120) != 0
    out = stack.output()
    assert "chroma stopped (rc=" in out and "Error creating Frontend Config" in out  # chroma's own words
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
