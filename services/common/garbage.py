"""Shorter garbage-collection pauses under load: what a worker loads at start-up is frozen.

CPython's cyclic garbage collector now and then walks every object that survived its younger
generations, with the GIL held: every thread of the worker, the event loop that answers `/healthz`
included, waits for it. A worker holds about 125,000 such objects once it has started (modules,
the model's Python side, FastAPI's and pydantic's structures), all living as long as the process.
Under `make loadtest` (16 search clients and the loader on 2 cores) those full collections took
140–340 ms of wall time, and the query service's `/healthz` p99 went over issue 7's 100 ms in most
runs (105.7, 106.6, 109.9, 110.2 ms; docs/benchmarks.md, "Load test").

`gc.freeze()` at the end of start-up moves those objects to a permanent generation that the
collector no longer walks, so a full collection only looks at what requests left behind (the
longest then 125 ms; `/healthz` p99 70.9–98.5 ms in five runs). Objects stay reference-counted:
frozen ones that lose their last reference are freed as before.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_objects() -> None:
    """Collect once, then exclude every object alive now from later collections."""
    gc.collect()
    gc.freeze()
    log.debug("garbage collector: %d start-up objects frozen", gc.get_freeze_count())


def unfreeze() -> None:
    """Back to normal collection (at shutdown, so what the app held can be collected)."""
    gc.unfreeze()
