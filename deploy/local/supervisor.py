"""Run a few long-lived processes side by side, the way a foreground `docker compose up` does.

Each child gets its own process group (so a terminal's Ctrl-C reaches only the supervisor, which
then stops the children in reverse start order), its output prefixed with its name, and the last
lines of that output kept, to show when it dies.

While starting up, a child that dies is an error (`check` raises, with its last lines: a service
that cannot start will not start by retrying). Once everything is up, `watch` restarts a child that
dies, like compose's `restart: unless-stopped` or a Kubernetes pod: after 1 s, doubling per failure
up to 30 s, back to 1 s once the child has stayed up for a minute.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

TAIL_LINES = 40
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
STABLE_AFTER_S = 60.0  # up this long: the next failure starts the backoff from the beginning
COLORS = ("\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m")
RESET = "\033[0m"


class ServiceExitedError(Exception):
    def __init__(self, name: str, returncode: int, tail: Sequence[str]) -> None:
        self.name, self.returncode, self.tail = name, returncode, list(tail)
        super().__init__(f"{name} exited with status {returncode}")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = Path(".")
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None
    started: float = field(default_factory=time.monotonic)
    failures: int = 0  # deaths since it last stayed up STABLE_AFTER_S
    restarts: int = 0
    restart_at: float | None = None  # when a dead child is due to start again


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Stop a process started with `start_new_session=True` and everything in its group (gunicorn
    and its workers): SIGTERM, then SIGKILL if it is still running after `timeout` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def restart_delay(failures: int, initial: float = RESTART_DELAY_S, cap: float = MAX_RESTART_DELAY_S) -> float:
    """Exponential backoff: initial, 2x, 4x, ... up to `cap` seconds."""
    return float(min(initial * 2 ** max(failures - 1, 0), cap))


class Supervisor:
    def __init__(
        self,
        out: TextIO | None = None,
        color: bool | None = None,
        *,
        restart_delay_s: float = RESTART_DELAY_S,
        max_restart_delay_s: float = MAX_RESTART_DELAY_S,
        stable_after_s: float = STABLE_AFTER_S,
    ) -> None:
        self.restart_delay_s, self.max_restart_delay_s = restart_delay_s, max_restart_delay_s
        self.stable_after_s = stable_after_s
        self.out = out or sys.stdout
        self.color = self.out.isatty() if color is None else color
        self.children: list[Child] = []
        self._lock = threading.Lock()
        self._width = 6

    def write(self, name: str, line: str) -> None:
        prefix = f"{name:>{self._width}} |"
        if self.color:
            names = [c.name for c in self.children]
            color = COLORS[names.index(name) % len(COLORS)] if name in names else ""
            prefix = f"{color}{prefix}{RESET}"
        with self._lock:
            self.out.write(f"{prefix} {line}\n")
            self.out.flush()

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> Child:
        child = Child(name, self._spawn(argv, env, cwd), list(argv), dict(env), cwd)
        self.children.append(child)
        self._width = max(self._width, len(name))
        self._read(child)
        return child

    @staticmethod
    def _spawn(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _read(self, child: Child) -> None:
        child.reader = threading.Thread(
            target=self._pump, args=(child,), name=f"log-{child.name}", daemon=True
        )
        child.reader.start()

    def _pump(self, child: Child) -> None:
        assert child.proc.stdout is not None
        for raw in child.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            child.tail.append(line)
            self.write(child.name, line)

    def check(self) -> None:
        """Raise ServiceExitedError for the first child that has exited."""
        for child in self.children:
            if child.proc.poll() is not None:
                if child.reader is not None:
                    child.reader.join(timeout=2)  # let the last lines in
                raise ServiceExitedError(child.name, child.proc.returncode, child.tail)

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        """Poll `ready` until it is true; fail early when a child dies, late on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            if ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
            time.sleep(0.5)

    def wait_http(self, url: str, timeout: float, status: int = 200) -> None:
        def ready() -> bool:
            try:
                return httpx.get(url, timeout=5).status_code == status
            except httpx.HTTPError:
                return False

        self.wait_until(url, ready, timeout)

    def watch(self, poll: float = 0.5, until: Callable[[], bool] = lambda: False) -> None:
        """Keep every child running, restarting those that die (with backoff), until `until()` is
        true or the caller is interrupted (Ctrl-C)."""
        while not until():
            self.revive()
            time.sleep(poll)

    def revive(self) -> None:
        """One round of `watch`: schedule a restart for each newly dead child, start those due."""
        now = time.monotonic()
        for child in self.children:
            if child.proc.poll() is None:
                if child.failures and now - child.started >= self.stable_after_s:
                    child.failures = 0
                continue
            if child.restart_at is None:
                # What it left behind in its process group (a gunicorn master's orphaned workers,
                # still holding the port) goes too, or the restart could not bind.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                if child.reader is not None:
                    child.reader.join(timeout=2)  # its last lines first
                child.failures += 1
                delay = restart_delay(child.failures, self.restart_delay_s, self.max_restart_delay_s)
                child.restart_at = now + delay
                self.write(
                    child.name,
                    f"exited with status {child.proc.returncode}; restarting in {delay:g}s "
                    f"(failure {child.failures} in a row)",
                )
            elif now >= child.restart_at:
                child.proc = self._spawn(child.argv, child.env, child.cwd)
                child.started, child.restart_at = now, None
                child.restarts += 1
                self.write(child.name, f"restarted (restart {child.restarts})")
                self._read(child)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM each child, newest first, and wait for it; SIGKILL what does not stop."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.terminate()
                try:
                    child.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.write(child.name, f"did not stop within {timeout:.0f}s; killing it")
                    child.proc.kill()
                    child.proc.wait()
            if child.reader is not None:
                child.reader.join(timeout=2)
