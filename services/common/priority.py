"""Model work runs at a lower CPU priority than the event loop that answers health probes.

A worker's event loop thread answers `/healthz` and `/readyz` and admits requests; the threads of
the server's pool run the towers and the Chroma calls. When every core is busy (16 search clients
and the loader on 2 cores, `make loadtest`), the scheduler shares the CPU evenly among all of them,
and a probe could wait behind a whole round of model work: its p99 went over the 100 ms that
issue 7 allows. Each thread that does model work therefore lowers its own priority
(Linux: per-thread nice, +10) the first time it starts some; threads it creates afterwards (the
document tower's pool) inherit it. The work still gets every idle cycle: priority only decides who
goes first when the cores are contended.

Runtimes may also start their compute threads while a model loads (OpenVINO's workers, ONNX
Runtime's intra-op pool): models are therefore loaded in a thread of lowered priority
(`in_background_thread`), whose children inherit it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

NICENESS = 10  # added to the thread's nice value: CFS weight 1024 -> 110 against the event loop
_state = threading.local()


def as_background_work() -> None:
    """Lower the calling thread's CPU priority by NICENESS, once per thread (no-op elsewhere)."""
    if getattr(_state, "lowered", False):
        return
    _state.lowered = True
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + NICENESS))
    except (AttributeError, OSError) as exc:  # not Linux, or not permitted: run as before
        log.debug("could not lower the priority of model work: %s", exc)


def in_background_thread(work: Callable[[], T]) -> T:
    """`work()` run in a new thread of lowered priority (as_background_work); returns its result or
    raises its exception. For loading a model: the threads the runtime starts meanwhile inherit the
    priority, so the model's compute never outranks the event loop."""
    with ThreadPoolExecutor(1, thread_name_prefix="model-load", initializer=as_background_work) as pool:
        return pool.submit(work).result()
