"""The stack a benchmark measures: its own Chroma server and the two services, each started by the
command docker-compose.yml runs, on free ports, configured by QUERY_* / INGEST_* variables.
Benchmarks reach the services over HTTP only, so they measure what a client of the product gets."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from twotower.registry import latest_version

log = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parents[1]
CHROMA_CONFIG = ROOT / "deploy" / "chroma" / "config.yaml"
START_TIMEOUT_S = 300.0  # torch workers on a busy 2-core machine take a while to import and load


def _stat(path: Path) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None once the process is gone."""
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
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

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

    def memory_mib(self, field: str = "VmRSS") -> dict[str, float]:
        """A /proc status field (VmRSS, or VmHWM: peak) of the master ("main") and each worker, MiB."""
        found: dict[str, float] = {}
        for i, pid in enumerate(self.pids()):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith(field)), 0)
            found["main" if i == 0 else f"worker{i}"] = round(kb / 1024, 1)
        return found

    def peak_rss_mb(self) -> dict[str, float]:
        return self.memory_mib("VmHWM")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    chroma: Process
    ingest: Process
    query: Process
    chroma_port: int
    prefix: str  # the services' collection prefix


def _wait(process: Process, path: str, timeout: float = START_TIMEOUT_S) -> None:
    """Until GET `path` answers 200; raises with the process's log tail if it exits or times out."""
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's group (gunicorn's master and workers), SIGKILL 30 s later."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass


def _spawn(argv: list[str], env: dict[str, str], log: Path, mode: str = "wb") -> subprocess.Popen[bytes]:
    with open(log, mode) as out:
        # Its own process group, so that stopping it stops gunicorn's workers too.
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextmanager
def _process(name: str, argv: list[str], env: dict[str, str], url: str, log: Path) -> Iterator[Process]:
    process = Process(name, _spawn(argv, env, log), url, log, argv, env)
    try:
        yield process
    finally:
        _stop(process.proc)  # the latest process: `restart` replaces it


def restart(process: Process, *, kill: bool = False) -> float:
    """Stop the process (SIGTERM and wait, or with `kill` SIGKILL: a crash) and start it again with
    the same command, its log appended to; returns the seconds the stop took."""
    started = time.perf_counter()
    if kill:
        os.killpg(process.proc.pid, signal.SIGKILL)
        process.proc.wait(timeout=30)
    else:
        _stop(process.proc)
    stopped = time.perf_counter() - started
    process.proc = _spawn(process.argv, process.env, process.log, "ab")
    return stopped


def wait_ready(process: Process, path: str, timeout: float = START_TIMEOUT_S) -> None:
    """Until GET `path` of the process answers 200 (see `_wait`)."""
    _wait(process, path, timeout)


def _executable(name: str) -> str:
    """`name` from this interpreter's environment first (the venv's gunicorn and chroma)."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


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
    """Chroma, ingestion and query for `engine`, each in its own process group, ready (query: its
    /healthz, as its /readyz needs documents); all stopped on exit. `extra`: more environment for
    all three, full names; this process's own QUERY_* / INGEST_* are not passed."""
    work_dir.mkdir(parents=True, exist_ok=True)
    chroma_port, ingest_port, query_port = free_port(), free_port(), free_port()
    prefix = f"bench{engine}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QUERY_", "INGEST_"))}
    base.update({"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    # Chroma's environment overrides: its CLI refuses --path, --host and --port beside a config file.
    chroma_env = {"CHROMA_PERSIST_PATH": str(work_dir / "chroma"), "CHROMA_LISTEN_ADDRESS": "127.0.0.1"}
    chroma_env["CHROMA_PORT"] = str(chroma_port)
    with ExitStack() as stack:
        chroma = stack.enter_context(
            _process(
                "chroma",
                [_executable("chroma"), "run", str(CHROMA_CONFIG)],
                {**base, **chroma_env, **(extra or {})},
                f"http://127.0.0.1:{chroma_port}",
                work_dir / "chroma.log",
            )
        )
        _wait(chroma, "/api/v2/heartbeat")
        services = {}
        for name, port, workers in (
            ("ingest", ingest_port, ingest_workers),
            ("query", query_port, query_workers),
        ):
            settings = {
                "engine": engine,
                "weights_dir": str(weights_dir),
                "chroma_host": "127.0.0.1",
                "chroma_port": str(chroma_port),
                "collection_prefix": prefix,
                "host": "127.0.0.1",
                "port": str(port),
                "workers": str(workers),
                "log_level": "warning",
            }
            env = {**base, **{f"{name.upper()}_{k.upper()}": v for k, v in settings.items()}, **(extra or {})}
            argv = [_executable("gunicorn"), "-c", f"services/{name}/gunicorn.conf.py"]
            argv.append(f"services.{name}.main:create_app()")
            url = f"http://127.0.0.1:{port}"
            services[name] = stack.enter_context(_process(name, argv, env, url, work_dir / f"{name}.log"))
        _wait(services["ingest"], "/readyz")
        _wait(services["query"], "/healthz")
        yield Stack(chroma, services["ingest"], services["query"], chroma_port, prefix)


def served_weights(weights_dir: Path, scratch: Path) -> tuple[Path, str]:
    """A weights directory whose LATEST has its ONNX export (made if missing); else the base model's."""
    from twotower.engine.export import export_published, publish_base

    version = latest_version(weights_dir)
    if version is None:
        log.info("nothing published in %s: publishing the base model into %s", weights_dir, scratch)
        weights_dir = scratch / "weights"
        version = publish_base(weights_dir)
    export_published([weights_dir], version)
    return weights_dir, version
