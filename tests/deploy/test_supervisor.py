"""The launcher's process supervision, with small stand-in processes instead of the services."""

from __future__ import annotations

import io
import itertools
import os
import sys
import time
from pathlib import Path

import pytest

from deploy.local.supervisor import ServiceExitedError, Supervisor

# Child processes started, killed and restarted: `make test-stack`.
pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]


def py(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def test_output_is_prefixed_per_service_and_stop_ends_every_child() -> None:
    out = io.StringIO()
    sup = Supervisor(out=out, color=False)
    a = sup.start("query", py("print('hello from a'); import time; time.sleep(60)"), os.environ, ROOT)
    b = sup.start("chroma", py("print('hello from b'); import time; time.sleep(60)"), os.environ, ROOT)
    sup.wait_until(
        "both printed", lambda: "hello from b" in out.getvalue() and "hello from a" in out.getvalue(), 30
    )
    sup.check()  # both alive: no error
    sup.stop(timeout=10)
    assert a.proc.returncode is not None and b.proc.returncode is not None
    lines = out.getvalue().splitlines()
    assert " query | hello from a" in lines
    assert "chroma | hello from b" in lines


def test_a_dead_child_is_reported_with_its_status_and_last_lines() -> None:
    sup = Supervisor(out=io.StringIO(), color=False)
    sup.start("ok", py("import time; time.sleep(60)"), os.environ, ROOT)
    sup.start("bad", py("print('loading'); print('fatal: no model'); raise SystemExit(3)"), os.environ, ROOT)
    started = time.monotonic()
    try:
        with pytest.raises(ServiceExitedError) as err:
            sup.wait_until("never", lambda: False, timeout=60)  # fails on the death, not the timeout
    finally:
        sup.stop(timeout=10)
    assert time.monotonic() - started < 30
    assert err.value.name == "bad" and err.value.returncode == 3
    assert err.value.tail[-2:] == ["loading", "fatal: no model"]


def test_a_child_that_ignores_sigterm_is_killed() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    out = io.StringIO()
    sup = Supervisor(out=out, color=False)
    child = sup.start("stubborn", py(code), os.environ, ROOT)
    sup.wait_until("up", lambda: "up" in out.getvalue(), 30)
    sup.stop(timeout=1)
    assert child.proc.returncode == -9
    assert "killing it" in out.getvalue()


def starts_logged(path: Path) -> list[float]:
    return [float(t) for t in path.read_text().split()] if path.exists() else []


def crashing(log: Path, up_s: float = 0.0) -> list[str]:
    """A child that notes when it started, stays up `up_s`, then dies with status 3."""
    return py(
        f"import time; open({str(log)!r}, 'a').write(f'{{time.monotonic()}} '); time.sleep({up_s}); raise SystemExit(3)"
    )


def test_a_child_that_dies_is_restarted_with_backoff_while_the_others_keep_running(tmp_path: Path) -> None:
    out, log = io.StringIO(), tmp_path / "starts"
    sup = Supervisor(out=out, color=False, restart_delay_s=0.3, max_restart_delay_s=0.6, stable_after_s=60)
    steady = sup.start("steady", py("import time; time.sleep(60)"), os.environ, ROOT)
    sup.start("crashy", crashing(log), os.environ, ROOT)
    try:
        deadline = time.monotonic() + 30
        sup.watch(poll=0.02, until=lambda: len(starts_logged(log)) >= 4 or time.monotonic() > deadline)
    finally:
        sup.stop(timeout=10)
    starts = starts_logged(log)
    assert len(starts) >= 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 0.3 s, then doubled, then capped at 0.6 s (plus the child's own start-up time).
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6 and gaps[2] >= 0.6, gaps
    assert steady.proc.returncode is not None  # stopped only by stop(), never restarted
    text = out.getvalue()
    assert "crashy | exited with status 3; restarting in 0.3s (failure 1 in a row)" in text
    assert "crashy | exited with status 3; restarting in 0.6s (failure 2 in a row)" in text
    assert "crashy | exited with status 3; restarting in 0.6s (failure 3 in a row)" in text
    assert "crashy | restarted (restart 1)" in text
    assert "steady | restarted" not in text


def test_a_child_that_stayed_up_starts_the_backoff_over(tmp_path: Path) -> None:
    out, log = io.StringIO(), tmp_path / "starts"
    sup = Supervisor(out=out, color=False, restart_delay_s=0.2, max_restart_delay_s=5, stable_after_s=0.3)
    sup.start("flaky", crashing(log, up_s=0.6), os.environ, ROOT)
    try:
        deadline = time.monotonic() + 30
        sup.watch(poll=0.02, until=lambda: len(starts_logged(log)) >= 3 or time.monotonic() > deadline)
    finally:
        sup.stop(timeout=10)
    assert out.getvalue().count("restarting in 0.2s (failure 1 in a row)") >= 2
    assert "failure 2 in a row" not in out.getvalue()


def test_stop_during_a_pending_restart_starts_nothing(tmp_path: Path) -> None:
    out, log = io.StringIO(), tmp_path / "starts"
    sup = Supervisor(out=out, color=False, restart_delay_s=30)
    child = sup.start("crashy", crashing(log), os.environ, ROOT)
    sup.watch(poll=0.02, until=lambda: "restarting in 30s" in out.getvalue())
    sup.stop(timeout=10)
    sup.revive()  # what a late watch round would do: the child is due in 30 s, nothing starts
    assert len(starts_logged(log)) == 1 and child.restarts == 0
