"""Model work runs below the event loop's CPU priority (services/common/priority.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from services.common.priority import NICENESS, as_background_work, in_background_thread
from twotower.engine import open_encoder
from twotower.registry import latest_version


def nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priority is Linux's")
def test_a_thread_doing_model_work_lowers_its_priority_once_and_alone() -> None:
    before = nice_of_this_thread()  # the test's own thread: left as it is
    seen: dict[str, int] = {}

    def work() -> None:
        seen["start"] = nice_of_this_thread()
        as_background_work()
        seen["after"] = nice_of_this_thread()
        as_background_work()  # once per thread: a second call does not lower it again
        seen["again"] = nice_of_this_thread()
        child = threading.Thread(target=lambda: seen.__setitem__("child", nice_of_this_thread()))
        child.start()
        child.join()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    expected = min(19, seen["start"] + NICENESS)
    assert seen["after"] == seen["again"] == expected
    assert expected > seen["start"] or seen["start"] == 19  # already the lowest priority there is
    assert seen["child"] == expected  # threads it starts (the document tower's pool) inherit it
    assert nice_of_this_thread() == before


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priority is Linux's")
def test_a_model_loads_below_the_event_loop_and_so_do_the_threads_the_runtime_starts(
    published_base: Path,
) -> None:
    """OpenVINO starts its compute threads while it compiles a graph: loaded through
    in_background_thread, they run below the caller, who is left as it was."""
    before = nice_of_this_thread()
    tasks = Path("/proc/self/task")
    existing = {t.name for t in tasks.iterdir()}
    encoder = in_background_thread(
        lambda: open_encoder(
            [published_base],
            latest_version(published_base),
            engine="onnx",
            threads=2,
            towers=("document",),
            backend="openvino",
        )
    )
    started = {t.name for t in tasks.iterdir()} - existing
    assert started, "OpenVINO started no threads while loading: this test no longer tests anything"
    assert encoder.encode_documents(["cells divide", "proteins fold"]).shape == (2, 384)
    expected = min(19, before + NICENESS)
    checked = 0
    for tid in started:
        try:
            nice = os.getpriority(os.PRIO_PROCESS, int(tid))
        except ProcessLookupError:  # the loading thread itself, gone once it returned
            continue
        assert nice == expected, tid
        checked += 1
    assert checked, "no thread the load started is still there"
    assert nice_of_this_thread() == before
    encoder.close()


def test_a_background_thread_returns_the_result_or_raises_the_error_here() -> None:
    assert in_background_thread(lambda: 41 + 1) == 42

    def fail() -> None:
        raise ValueError("no such model")

    with pytest.raises(ValueError, match="no such model"):
        in_background_thread(fail)
