"""Settings both services' `gunicorn.conf.py` share: uvicorn workers, generous timeouts, logs on stdout."""

from __future__ import annotations

import logging
from typing import Any, Literal

from services.common.multiprocess import mark_worker_dead, prepare_metrics_dir, remove_metrics_dir
from services.common.settings import ServiceSettings

# Control characters (C0, DEL, C1) and Unicode's line and paragraph separators: anything a log
# reader could take for the end of a line. A client's path, query or header value reaches log
# lines (the access line, errors naming a path); escaped, it cannot start a forged line.
_UNSAFE = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]} | {
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def escape_controls(text: str) -> str:
    return text.translate(_UNSAFE)


class EscapeControlsFilter(logging.Filter):
    """On the plain-text log handler: every record's message is one line, whatever a client sent.
    (A traceback, which the formatter appends, stays multi-line: no client writes it.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_controls(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


LogFormat = Literal["plain", "json"]
PLAIN = "%(asctime)s [%(process)d] %(levelname)s %(name)s [%(correlation_id)s]: %(message)s"
# python-json-logger: one JSON object per line, these fields (and any `extra`) as its keys.
JSON_FIELDS = "%(asctime)s %(process)d %(levelname)s %(name)s %(correlation_id)s %(message)s"


def logconfig(level: str, fmt: LogFormat = "plain") -> dict[str, Any]:
    """Everything (gunicorn, uvicorn, the app's own loggers) to stdout in one format, one line per
    record: plain text with control characters escaped, or JSON (which escapes them itself)."""
    handler = {"class": "logging.StreamHandler", "formatter": fmt, "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": PLAIN},
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": JSON_FIELDS,
                "rename_fields": {"correlation_id": "request_id"},
            },
        },
        "filters": {
            # Every record gets the id of the request it was logged in ("-" outside one).
            "request_id": {"()": "asgi_correlation_id.CorrelationIdFilter", "default_value": "-"},
            "escape": {"()": f"{__name__}.EscapeControlsFilter"},
        },
        "handlers": {
            "stdout": {**handler, "filters": ["request_id"] + (["escape"] if fmt == "plain" else [])}
        },
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {
            # The uvicorn worker copies these two loggers' handlers onto uvicorn's own loggers
            # (and stops them propagating), so they need their own handler.
            "gunicorn.error": {"level": level.upper(), "handlers": ["stdout"], "propagate": False},
            # uvicorn's access log (which the worker routes through this logger) is written outside
            # the request's context, so it could not show the request id: the app writes its own
            # access line (services.access, see services/common/metrics.py) and this one is off.
            "gunicorn.access": {"level": "WARNING", "handlers": ["stdout"], "propagate": False},
            # One line per Chroma request is noise; failures surface as our own errors.
            "httpx": {"level": "WARNING"},
            # A warning per request whose X-Request-ID was replaced: a client could flood the log.
            "asgi_correlation_id": {"level": "ERROR"},
            "httpcore": {"level": "WARNING"},
        },
    }


def gunicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        # uvicorn's worker with httptools and uvloop required and the request head bounded.
        "worker_class": "services.common.worker.ServiceWorker",
        # Each worker loads the model in its lifespan before it serves; on a slow CPU that can take a
        # while, and a long ingest request must not get its worker killed.
        "timeout": 300,
        "graceful_timeout": 30,
        "keepalive": 5,
        # gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl):
        # the query and ingestion servers on one host would fight over it, and we do not use it.
        "control_socket_disable": True,
        # One shared Prometheus directory for all workers (services/common/multiprocess.py).
        "on_starting": prepare_metrics_dir,
        "child_exit": mark_worker_dead,
        "on_exit": remove_metrics_dir,
        "loglevel": settings.log_level,
        "logconfig_dict": logconfig(settings.log_level, settings.log_format),
    }
