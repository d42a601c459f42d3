"""Every service of docker-compose.yml, started from the compose file's own command lines.

No Docker engine here or in CI, so this is the proof that what the containers run serves: the
compose file is read the way the local stack reads it (deploy/local/compose.py: environment mapped
to local hosts, ports and directories; `chroma run` for the official Chroma image), each command
runs as its own process (real gunicorn, real uvicorn workers, the real packaged model, a real
Chroma server), and each service must answer over HTTP: health, readiness, ingest, search.
The health checks the compose file and the Dockerfiles declare are run here too.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from deploy.local.compose import LocalLayout, LocalService, local_services
from deploy.local.stack import child_environment
from tests.conftest import free_port, wait_http
from tests.deploy.dockerfiles import instruction
from tests.deploy.procs import resolve, stop_group

# Every compose service as its own process: `make test-stack`.
pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "compose-test-key"
DOCS = [
    {
        "id": "eiffel",
        "title": "Eiffel Tower",
        "text": "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    },
    {
        "id": "mito",
        "title": "Mitochondria",
        "text": "Mitochondria produce most of the chemical energy a cell needs.",
    },
    {
        "id": "lists",
        "title": "Python lists",
        "text": "Lists in Python are mutable sequences of arbitrary objects.",
    },
]


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


class Stack:
    def __init__(self, services: dict[str, LocalService], procs: dict, logs: Path) -> None:
        self.services, self.procs, self.logs = services, procs, logs

    def url(self, name: str) -> str:
        return self.services[name].url

    def port(self, name: str) -> int:
        return int(self.url(name).rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, published_base: Path) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("compose")
    ports = {"chroma": free_port(), "ingest": free_port(), "query": free_port()}
    # The weights volume as `make run` leaves it on first start (the images carry the same base
    # model in /models): the untrained base model, published with its ONNX export.
    layout = LocalLayout(ports, tmp / "data", published_base)
    # Only the compose file's own defaults, plus the one value it requires: no .env, no shell.
    services = local_services(layout, variables={"INGEST_API_KEY": API_KEY})
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, service in services.items():
            env = child_environment(service.env)
            with (tmp / f"{name}.log").open("wb") as out:
                procs[name] = subprocess.Popen(
                    resolve(service.argv, env), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
        for name, service in services.items():
            wait_http(service.ready_url, timeout=300, proc=procs[name])
        yield Stack(services, procs, tmp)
    except Exception:
        print(*(p.read_text()[-3000:] for p in tmp.glob("*.log")))
        raise
    finally:
        for proc in reversed(list(procs.values())):
            stop_group(proc)


def test_every_default_service_comes_from_the_compose_file(stack: Stack) -> None:
    compose = load_compose()
    assert set(stack.services) == {name for name, s in compose["services"].items() if not s.get("profiles")}
    for name in ("query", "ingest"):
        argv = [str(a) for a in stack.procs[name].args]  # type: ignore[union-attr]
        assert argv[1:] == compose["services"][name]["command"][1:]  # argv[0] resolved to the venv
        assert Path(argv[0]).name == compose["services"][name]["command"][0]


def test_each_service_answers(stack: Stack) -> None:
    assert httpx.get(stack.url("chroma") + "/api/v2/heartbeat").status_code == 200
    for name in ("query", "ingest"):
        assert httpx.get(stack.url(name) + "/healthz").status_code == 200
    ready = httpx.get(stack.url("ingest") + "/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_query_runs_the_compose_worker_count(stack: Stack) -> None:
    # QUERY_WORKERS: ${QUERY_WORKERS:-2} -> two gunicorn workers, each with its own model.
    workers = re.findall(r"Booting worker with pid: (\d+)", (stack.logs / "query.log").read_text())
    assert len(set(workers)) == 2


def test_ingest_then_search_round_trip(stack: Stack) -> None:
    ingest, query = stack.url("ingest"), stack.url("query")
    body = {"documents": DOCS}
    # The compose file gives the key no default; the service holds it to it.
    assert httpx.post(f"{ingest}/documents", json=body).status_code == 401
    posted = httpx.post(f"{ingest}/documents", json=body, headers={"X-API-Key": API_KEY}, timeout=120)
    assert posted.status_code == 200, posted.text
    assert posted.json()["upserted"] == 3
    assert httpx.get(f"{ingest}/documents/mito").json()["text"] == DOCS[1]["text"]

    # The query service is ready once its model version's collection exists.
    ready = httpx.get(f"{query}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["model_version"] == posted.json()["model_version"]
    found = httpx.post(f"{query}/search", json={"query": "Which tower stands in Paris?", "k": 2}, timeout=60)
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert [r["id"] for r in results][:1] == ["eiffel"] and len(results) == 2


def healthcheck_script(port: int) -> str:
    """The compose file's Chroma health check, as the container's shell would receive it."""
    test = load_compose()["services"]["chroma"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "/bin/bash", "-c"]
    script = test[3].replace("$$", "$")  # as compose does
    assert "/dev/tcp/127.0.0.1/8000" in script and "/api/v2/heartbeat" in script
    return script.replace("/dev/tcp/127.0.0.1/8000", f"/dev/tcp/127.0.0.1/{port}")


def test_compose_chroma_healthcheck_passes_on_a_live_server(stack: Stack) -> None:
    ok = subprocess.run(["/bin/bash", "-c", healthcheck_script(stack.port("chroma"))], timeout=10)
    assert ok.returncode == 0
    # ...and fails where nothing listens.
    down = subprocess.run(
        ["/bin/bash", "-c", healthcheck_script(free_port())], timeout=10, stderr=subprocess.DEVNULL
    )
    assert down.returncode != 0


@pytest.mark.parametrize("name", ["query", "ingest"])
def test_dockerfile_healthcheck_passes_on_the_live_service(stack: Stack, name: str) -> None:
    dockerfile = ROOT / "deploy" / "service" / "Dockerfile"
    cmd = json.loads(instruction(dockerfile, "HEALTHCHECK").split(" CMD ", 1)[1])
    assert cmd[0] == "python"
    # The image's ENV for this service (its build arguments), and the port the service runs on.
    image = {"TWOTOWER_PORT_VARIABLE": f"{name.upper()}_PORT", "TWOTOWER_DEFAULT_PORT": "1"}
    env = child_environment({**image, f"{name.upper()}_PORT": str(stack.port(name))})
    python = resolve(["python"], env)[0]
    assert subprocess.run([python, *cmd[1:]], env=env, timeout=20).returncode == 0
    env[f"{name.upper()}_PORT"] = str(free_port())
    failed = subprocess.run([python, *cmd[1:]], env=env, timeout=20, capture_output=True)
    assert failed.returncode != 0
