"""Compose services started as processes in tests, the way the local stack starts them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def resolve(argv: list[str], env: dict[str, str]) -> list[str]:
    """The executable found on the environment's PATH (the venv first, as the local stack puts it)."""
    found = shutil.which(argv[0], path=env["PATH"])
    assert found is not None, f"{argv[0]} not on PATH"
    return [found, *argv[1:]]


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM to a process started with start_new_session and its group, SIGKILL after `timeout`."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` in its own session from the repository root, its output in `log` (whose tail is
    printed when the block fails), stopped with stop_group on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    except BaseException:
        print(log.read_text()[-5000:])
        raise
    finally:
        stop_group(proc)
