"""Session fixtures shared by every test: a real `chroma run` server, real HTTP servers, data paths."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

# Renamed: `chroma_server` is the session fixture below.
from deploy.local.compose import chroma_server as chroma_run

ROOT = Path(__file__).resolve().parents[1]
# SciFact in BEIR layout lives beside the project, never inside it (see ../shared/data/README.md).
DATA_DIR = Path(os.environ.get("TWOTOWER_DATA_DIR", ROOT.parent / "shared" / "data"))
SCIFACT = DATA_DIR / "scifact"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not up after {timeout}s")


class ChromaServer:
    """A real Chroma server process (`chroma run`) that tests can stop and start again."""

    def __init__(self, path: Path, port: int) -> None:
        self.path, self.port, self.host = path, port, "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = path.parent / f"chroma-{port}.log"

    def start(self) -> None:
        chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
        # On deploy/chroma/config.yaml, as compose and the local stack run it.
        argv, overrides = chroma_run(self.path, self.host, self.port, executable=chroma)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, env={**os.environ, **overrides}, stdout=log, stderr=subprocess.STDOUT
            )
        wait_http(f"http://{self.host}:{self.port}/api/v2/heartbeat", proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """Take the server down for the duration of the block, then bring it back."""
        self.stop()
        try:
            yield
        finally:
            self.start()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path_factory.mktemp("chroma") / "data", free_port())
    server.start()
    yield server
    server.stop()


class LiveServer:
    """A FastAPI app served by uvicorn on a free port in a background thread: real HTTP."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("live server failed to start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def published_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights directory holding the untrained base model published with its ONNX export, made
    once per session the way `make run` and the service images get theirs (`--base`)."""
    from twotower.engine.export import main as export

    root = tmp_path_factory.mktemp("published-base")
    assert export(["--base", "--out", str(root)]) == 0
    return root


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    if not (SCIFACT / "corpus.jsonl").exists():
        pytest.fail(f"SciFact not found at {SCIFACT}; set TWOTOWER_DATA_DIR to the folder holding scifact/")
    return SCIFACT
