"""The services' log configuration (services/common/gunicorn_common.logconfig, what gunicorn applies):
one line per record whatever a client put in it, in plain text or, as an option, JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from services.common.gunicorn_common import escape_controls

FORGED = "/documents/x\nERROR forged\r\nERROR forged too\u2028ERROR\x1b[31m red\x85"
SCRIPT = """
import logging.config, sys
from services.common.gunicorn_common import logconfig
logging.config.dictConfig(logconfig("info", sys.argv[1]))
logging.getLogger("services.access").info('%s "GET %s HTTP/1.1" %d', "1.2.3.4:5", sys.argv[2], 404)
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("services.test").exception("failed on %s", sys.argv[2])
"""


def logged(fmt: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt, FORGED], capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()


def test_plain_lines_escape_what_a_client_sent() -> None:
    lines = logged("plain")
    access, failed = lines[0], lines[1]
    assert access.endswith(
        f'INFO services.access [-]: 1.2.3.4:5 "GET {escape_controls(FORGED)} HTTP/1.1" 404'
    )
    assert "\\x0aERROR forged\\x0d\\x0aERROR forged too\\u2028ERROR\\x1b[31m red\\x85" in access
    assert failed.endswith(f"ERROR services.test [-]: failed on {escape_controls(FORGED)}")
    # The traceback follows on lines of its own: the program wrote it, not the client.
    assert lines[2] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom"


def test_json_lines_are_one_object_each() -> None:
    records = [json.loads(line) for line in logged("json")]
    assert len(records) == 2
    access, failed = records
    assert access["message"] == f'1.2.3.4:5 "GET {FORGED} HTTP/1.1" 404'
    assert (access["levelname"], access["name"], access["request_id"]) == ("INFO", "services.access", "-")
    assert failed["message"] == f"failed on {FORGED}" and "ValueError: boom" in failed["exc_info"]
