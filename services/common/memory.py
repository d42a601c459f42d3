"""Keep a worker's resident memory flat under load: glibc's malloc gives each thread that allocates
its own arena (up to 8 per core), and a worker's request threads (the thread pool, the tokenizer's,
ONNX Runtime's) each fragment theirs, so RSS creeps up for minutes under steady load. Two arenas
keep it flat at no measurable cost (docs/benchmarks.md, load test).

Called in gunicorn's master before it forks the workers, which inherit the setting. An explicit
MALLOC_ARENA_MAX in the environment wins; elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process and the ones it forks; True when applied."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc
        return False
