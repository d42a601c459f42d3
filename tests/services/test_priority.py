"""Model work runs below the event loop's CPU priority (services/common/priority.py)."""

from __future__ import annotations

import os
import threading

import pytest

from services.common.priority import NICENESS, as_background_work


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
