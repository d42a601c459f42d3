# ruff: noqa: N999 - gunicorn finds its config by this file name
# gunicorn -c services/query/gunicorn.conf.py "services.query.main:create_app()"
# Bind address and worker count come from the service's Settings (QUERY_HOST/PORT/WORKERS).
from services.common.gunicorn_common import gunicorn_options
from services.query.config import Settings

globals().update(gunicorn_options(Settings()))
