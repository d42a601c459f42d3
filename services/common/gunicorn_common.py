"""Settings both services' `gunicorn.conf.py` share: uvicorn workers, generous timeouts, logs on stdout."""

from __future__ import annotations

from typing import Any

from services.common.memory import limit_malloc_arenas
from services.common.multiprocess import mark_worker_dead, prepare_metrics_dir, remove_metrics_dir
from services.common.settings import ServiceSettings

# uvicorn's worker (the `uvicorn-worker` package) with httptools and uvloop required: worker.py.
WORKER_CLASS = "services.common.worker.ServiceWorker"


def logconfig(level: str) -> dict[str, Any]:
    """Everything (gunicorn, uvicorn, the app's own loggers) to stdout in one format."""
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {
                "format": "%(asctime)s [%(process)d] %(levelname)s %(name)s [%(request_id)s]: %(message)s"
            }
        },
        # Every record gets the id of the request it was logged in ("-" outside one).
        "filters": {"request_id": {"()": "services.common.request_id.RequestIdFilter"}},
        "handlers": {"stdout": {**handler, "filters": ["request_id"]}},
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {
            # The uvicorn worker copies these two loggers' handlers onto uvicorn's own loggers
            # (and stops them propagating), so they need their own handler.
            "gunicorn.error": {"level": level.upper(), "handlers": ["stdout"], "propagate": False},
            # uvicorn's access log (which the worker routes through this logger) is written outside
            # the request's context, so it could not show the request id: the app writes its own
            # access line (services.access, see services/common/request_id.py) and this one is off.
            "gunicorn.access": {"level": "WARNING", "handlers": ["stdout"], "propagate": False},
            # One line per Chroma request is noise; failures surface as our own errors.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def gunicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    limit_malloc_arenas()  # in the master, before the fork: every worker inherits it
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": WORKER_CLASS,
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
        "logconfig_dict": logconfig(settings.log_level),
    }
