"""The stack a benchmark run measures: its own Chroma server and the two services under gunicorn,
as production runs them (same gunicorn config and app factories), on free ports, one engine."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.local.compose import chroma_server

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 300.0  # torch workers on a busy 2-core machine take a while to import and load


def _stat(path: Path) -> list[str] | None:
    """The fields of a /proc/<pid>/stat after the command name (state, ppid, ...), or None once the
    process is gone."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (gunicorn's workers, a launcher's services)."""
    found = []
    for path in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat(path)
        if fields is not None and int(fields[1]) == pid:
            found.append(int(path.parent.name))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def pids(self) -> list[int]:
        """The process and its children (gunicorn's workers)."""
        return [self.proc.pid, *children(self.proc.pid)]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process and its workers have used so far."""
        total = 0
        for pid in self.pids():
            fields = _stat(Path(f"/proc/{pid}/stat"))
            if fields is not None:
                total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak resident memory (VmHWM) of the master and of each worker, in MiB."""
        peaks: dict[str, float] = {}
        for i, pid in enumerate(self.pids()):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
            peaks["main" if i == 0 else f"worker{i}"] = round(kb / 1024, 1)
        return peaks

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    engine: str
    chroma: Process
    ingest: Process
    query: Process
    chroma_port: int
    prefix: str
    settings: dict[str, str]  # what both services run on (unprefixed names), before port and workers


def _wait(process: Process, path: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"{process.name} exited ({process.proc.returncode}):\n{process.tail()}")
        try:
            if httpx.get(process.url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{process.name} not ready after {timeout:.0f}s:\n{process.tail()}")


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM to a process started in its own session and its group (gunicorn and its workers),
    SIGKILL if it still runs after `timeout` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def _process(name: str, argv: list[str], env: dict[str, str], url: str, log: Path) -> Iterator[Process]:
    with open(log, "wb") as out:
        # Its own process group, so that stopping it stops gunicorn's workers too.
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    process = Process(name, proc, url, log)
    try:
        yield process
    finally:
        stop_group(proc)


def _service_env(prefix: str, settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUERY_", "INGEST_"))}
    env.update({"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    env.update({f"{prefix}{k.upper()}": v for k, v in settings.items()})
    return env


@contextmanager
def running_chroma(work_dir: Path, port: int) -> Iterator[Process]:
    """`chroma run` on deploy/chroma/config.yaml (as every stack runs it), data in
    `work_dir`/chroma, answering its heartbeat; stopped on exit."""
    chroma_bin = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    argv, overrides = chroma_server(work_dir / "chroma", "127.0.0.1", port, executable=chroma_bin)
    url = f"http://127.0.0.1:{port}"
    with _process("chroma", argv, {**os.environ, **overrides}, url, work_dir / "chroma.log") as chroma:
        _wait(chroma, "/api/v2/heartbeat")
        yield chroma


@contextmanager
def running_stack(
    engine: str,
    weights_dir: Path,
    work_dir: Path,
    *,
    query_workers: int = 2,
    ingest_workers: int = 1,
    extra: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Chroma, ingestion and query for `engine`, each in its own process; all stopped on exit."""
    bin_dir = Path(sys.executable).parent
    gunicorn_bin = shutil.which("gunicorn", path=str(bin_dir)) or "gunicorn"
    work_dir.mkdir(parents=True, exist_ok=True)
    chroma_port, ingest_port, query_port = free_port(), free_port(), free_port()
    prefix = f"bench{engine}"
    common = {
        "engine": engine,
        "weights_dir": str(weights_dir),
        "chroma_host": "127.0.0.1",
        "chroma_port": str(chroma_port),
        "collection_prefix": prefix,
        "host": "127.0.0.1",
        "log_level": "warning",
    }
    with ExitStack() as stack:
        chroma = stack.enter_context(running_chroma(work_dir, chroma_port))
        processes = {}
        for name, port, workers in (
            ("ingest", ingest_port, ingest_workers),
            ("query", query_port, query_workers),
        ):
            env = _service_env(f"{name.upper()}_", {**common, "port": str(port), "workers": str(workers)})
            env.update(extra or {})  # full variable names (QUERY_..., INGEST_...)
            argv = [
                gunicorn_bin,
                "-c",
                f"services/{name}/gunicorn.conf.py",
                f"services.{name}.main:create_app()",
            ]
            processes[name] = stack.enter_context(
                _process(name, argv, env, f"http://127.0.0.1:{port}", work_dir / f"{name}.log")
            )
        _wait(processes["ingest"], "/readyz")
        _wait(processes["query"], "/healthz")
        yield Stack(engine, chroma, processes["ingest"], processes["query"], chroma_port, prefix, common)
