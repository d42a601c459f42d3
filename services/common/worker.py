"""The gunicorn worker class both services run: uvicorn's, with its fast parts required.

uvicorn picks its C HTTP parser (httptools) and event loop (uvloop) only when they happen to be
installed, and quietly falls back to the pure-Python h11 parser and asyncio's loop otherwise, which
cost more per request. Naming them here makes them part of the service: an image built without them
fails at start instead of serving slower than `make bench` measured.
"""

from __future__ import annotations

from typing import Any, ClassVar

# Imported here, not only named below: a missing one fails as the worker class loads, and the image
# test (tests/deploy/test_images.py) sees them among what the service imports from its lock.
import httptools  # noqa: F401
import uvloop  # noqa: F401
from uvicorn_worker import UvicornWorker


class ServiceWorker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "uvloop", "http": "httptools"}
