# ruff: noqa: N999 - gunicorn finds its config by this file name
# gunicorn -c services/ingest/gunicorn.conf.py "services.ingest.main:create_app()"
# Bind address and worker count come from the service's Settings (INGEST_HOST/PORT/WORKERS).
from services.common.gunicorn_common import gunicorn_options
from services.ingest.config import Settings

globals().update(gunicorn_options(Settings()))
