"""podman's Docker-compatible API for `make compose-test`: the socket service, the health-check ticker,
the compose command bound to them, the project's containers, and the cleanup that leaves nothing
behind. Stdlib only."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SERVICES = ("chroma", "ingest", "query")

log = logging.getLogger("compose-test")


class CheckError(AssertionError):
    pass


def check(condition: object, message: str) -> None:
    if not condition:
        raise CheckError(message)


class Engine:
    """podman's API socket, the compose command bound to it, and the project's containers."""

    def __init__(self, project: str, workdir: Path) -> None:
        self.project = project
        self.socket = workdir / "podman.sock"
        self.env = os.environ | {
            "CONTAINERS_CONF": str(HERE / "containers.conf"),
            "DOCKER_HOST": f"unix://{self.socket}",
            "COMPOSE_PROJECT_NAME": project,
            # compose 1.29 talks to the API directly; its BuildKit path would need the docker CLI.
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
        }
        self.service: subprocess.Popen[bytes] | None = None
        self.ticker: subprocess.Popen[bytes] | None = None
        self.service_log = workdir / "podman-service.log"

    def run(
        self, *argv: str, timeout: float = 600, check_rc: bool = True, quiet: bool = False
    ) -> subprocess.CompletedProcess[str]:
        if not quiet:
            log.info("$ %s", " ".join(argv))
        result = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check_rc and result.returncode != 0:
            raise CheckError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result

    def compose(
        self, *argv: str, timeout: float = 600, check_rc: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # The trainer's profile for build, run and down only: `up` must start the three services alone.
        profile = ["--profile", "train"] if argv[0] in ("build", "run", "down") else []
        return self.run("docker-compose", *profile, *argv, timeout=timeout, check_rc=check_rc)

    def start(self) -> None:
        self.service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            env=self.env,
            stdout=self.service_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self.ping():
            check(
                self.service.poll() is None, f"podman system service exited: {self.service_log.read_text()}"
            )
            check(time.monotonic() < deadline, "podman's API socket did not answer within 30 s")
            time.sleep(0.2)
        self.ticker = subprocess.Popen(
            [sys.executable, str(HERE / "health_ticker.py"), "--project", self.project],
            env=self.env,
            start_new_session=True,
        )

    def ping(self) -> bool:
        try:
            conn = _UnixHTTPConnection(str(self.socket))
            conn.request("GET", "/_ping")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def containers(self, all_: bool = False) -> list[dict[str, Any]]:
        ids = self.run(
            "podman", "ps", *(["-a"] if all_ else []), "-q",
            "--filter", f"label=com.docker.compose.project={self.project}",
            quiet=True,
        ).stdout.split()  # fmt: skip
        if not ids:
            return []
        return list(json.loads(self.run("podman", "inspect", *ids, quiet=True).stdout))

    def container(self, service: str) -> dict[str, Any]:
        found = [
            c for c in self.containers() if c["Config"]["Labels"].get("com.docker.compose.service") == service
        ]
        check(len(found) == 1, f"expected one running {service} container, found {len(found)}")
        return found[0]

    def health(self) -> dict[str, str]:
        return {
            c["Config"]["Labels"]["com.docker.compose.service"]: (c["State"].get("Health") or {}).get(
                "Status", "none"
            )
            for c in self.containers()
        }

    def wait_healthy(self, services: tuple[str, ...] = SERVICES, timeout: float = 420) -> float:
        started = time.monotonic()
        while True:
            check(self.ticker is not None and self.ticker.poll() is None, "the health-check ticker died")
            health = self.health()
            if all(health.get(s) == "healthy" for s in services):
                return time.monotonic() - started
            check(time.monotonic() - started < timeout, f"not healthy after {timeout:.0f} s: {health}")
            time.sleep(1)

    def cleanup(self) -> None:
        """Remove everything of the project, then stop the ticker and the API service."""
        if self.service is not None and self.service.poll() is None:
            with contextlib.suppress(Exception):
                self.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180, check_rc=False)
            label = f"label=com.docker.compose.project={self.project}"
            for kind in ("container", "volume", "network"):
                with contextlib.suppress(Exception):
                    flag = ["-a"] if kind == "container" else []
                    names = self.run(
                        "podman", kind, "ls", *flag, "-q", "--filter", label, quiet=True
                    ).stdout.split()
                    if names:
                        self.run("podman", kind, "rm", "-f", *names, check_rc=False, quiet=True)
        for proc in (self.ticker, self.service):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def http_json(
    method: str, url: str, body: Any = None, key: str | None = None, timeout: float = 60
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} | ({"X-API-Key": key} if key else {})
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw or b"null")
        except ValueError:
            return error.code, raw.decode(errors="replace")


def wait_http(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if http_json("GET", url, timeout=10)[0] == 200:
                return
        check(time.monotonic() < deadline, f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(1)
