"""docker-compose.yml, the Dockerfiles, deploy/k8s, the lock files, .env.example, the README and
the code agree: versions, commands, ports, paths and variable names. A reader of deploy/ must find
nothing that disagrees with anything else."""

from __future__ import annotations

import importlib.util
import itertools
import re
import shlex
from pathlib import Path
from typing import Any

import chromadb
import pytest
import yaml
from pydantic_settings import BaseSettings

from deploy.k8s.validate import manifests
from deploy.local.compose import interpolate
from services.ingest.config import Settings as IngestSettings
from services.query.config import Settings as QuerySettings
from tests.deploy.dockerfiles import exec_form, instruction, instructions, stages
from tests.deploy.locks import LOCKS, read_lock

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
K8S = [doc for _, doc in manifests()]
SETTINGS: dict[str, type[BaseSettings]] = {"query": QuerySettings, "ingest": IngestSettings}
DOCKERFILES = {name: ROOT / SERVICES[name]["build"]["dockerfile"] for name in ("query", "ingest", "trainer")}
ARGS = {name: {k: str(v) for k, v in SERVICES[name]["build"].get("args", {}).items()} for name in DOCKERFILES}


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    volumes = [interpolate(v, {}).split(":") for v in service.get("volumes", [])]
    return {v[1]: v[0] for v in volumes}


def pinned(package: str, lock: str = "query") -> str:
    """The version `make lock` resolved for a package (requirements/<lock>.lock)."""
    locked = read_lock(LOCKS[lock])
    assert package in locked, f"{package} not in requirements/{lock}.lock"
    return locked[package].version


def k8s(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in K8S if d["kind"] == kind and d["metadata"]["name"] == name)


def k8s_container(kind: str, name: str) -> dict[str, Any]:
    return dict(k8s(kind, name)["spec"]["template"]["spec"]["containers"][0])


def env_names(settings: type[BaseSettings]) -> set[str]:
    prefix = settings.model_config["env_prefix"]
    return {f"{prefix}{field}".upper() for field in settings.model_fields}


def test_chroma_server_is_exactly_the_pinned_client_version() -> None:
    # The services' thin client (serve/train locks), the full package (tests' `chroma run`, the compose
    # test's stand-in image) and the server images: one version.
    version = pinned("chromadb-client")
    assert (
        pinned("chromadb-client", "train")
        == pinned("chromadb", "dev")
        == pinned("chromadb", "chroma")
        == version
    )
    assert chromadb.__version__ == version
    assert SERVICES["chroma"]["image"] == f"chromadb/chroma:{version}"
    assert k8s_container("StatefulSet", "chroma")["image"] == f"chromadb/chroma:{version}"


def test_chroma_persists_in_data_and_checks_the_v2_heartbeat() -> None:
    # Chroma 1.x keeps its data in /data; /api/v1/heartbeat answers 410 there.
    assert volume_mounts(SERVICES["chroma"]) == {
        "/data": "chroma-data",
        "/config.yaml": "./deploy/chroma/config.yaml",
    }
    assert "ports" not in SERVICES["chroma"]  # not published to the host
    assert SERVICES["chroma"]["expose"] == ["8000"]
    assert "/api/v2/heartbeat" in " ".join(SERVICES["chroma"]["healthcheck"]["test"])
    chroma = k8s_container("StatefulSet", "chroma")
    assert chroma["volumeMounts"] == [
        {"name": "data", "mountPath": "/data"},
        {"name": "config", "mountPath": "/config.yaml", "subPath": "config.yaml", "readOnly": True},
    ]
    assert chroma["ports"][0]["containerPort"] == 8000
    for probe in ("readinessProbe", "livenessProbe"):
        assert chroma[probe]["httpGet"]["path"] == "/api/v2/heartbeat"
    assert "api/v1" not in yaml.safe_dump(COMPOSE) + yaml.safe_dump_all(K8S)  # comments aside


def test_chroma_runs_on_one_configuration_everywhere() -> None:
    # The official image runs `chroma run /config.yaml`: compose mounts deploy/chroma/config.yaml
    # there, k8s the same text from a ConfigMap, and the stand-in image starts the same way.
    text = (ROOT / "deploy" / "chroma" / "config.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["persist_path"] == "/data"  # the volume both mount there
    assert config["port"] == 8000 and config["listen_address"] == "0.0.0.0"
    assert config["collections_with_segments_provider"]["cache"]["lru"]["capacity"] > 0
    assert k8s("ConfigMap", "chroma-config")["data"]["config.yaml"] == text
    volumes = k8s("StatefulSet", "chroma")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": "chroma-config"}} in volumes
    standin = (ROOT / "deploy" / "podman" / "chroma.Containerfile").read_text()
    assert 'CMD ["chroma", "run", "/config.yaml"]' in standin


@pytest.mark.parametrize("name", ["query", "ingest", "trainer"])
def test_one_command_per_service_everywhere(name: str) -> None:
    command = SERVICES[name]["command"]
    if name == "trainer":  # the services' image runs the command compose and k8s name
        assert exec_form(DOCKERFILES[name], "CMD") == command
    workload = ("Job", "trainer") if name == "trainer" else ("Deployment", name)
    assert k8s_container(*workload)["command"] == command
    if name != "trainer":
        assert command == [
            "gunicorn",
            "-c",
            f"services/{name}/gunicorn.conf.py",
            f"services.{name}.main:create_app()",
        ]
        assert (ROOT / command[2]).is_file()


def test_trainer_command_parses_and_writes_the_weights_volume() -> None:
    from training.train import parse_args

    command = SERVICES["trainer"]["command"]
    assert command[:3] == ["python", "-m", "training.train"]
    cfg = parse_args(command[3:])
    mounts = volume_mounts(SERVICES["trainer"])
    assert mounts[cfg.weights_dir] == "weights"  # read-write: the trainer publishes there
    assert not any(v.startswith("weights:") and v.endswith(":ro") for v in SERVICES["trainer"]["volumes"])
    assert cfg.data in mounts and cfg.wandb_dir in mounts
    assert SERVICES["trainer"]["profiles"] == ["train"]


@pytest.mark.parametrize("name", ["query", "ingest"])
def test_ports_agree(name: str) -> None:
    settings = SETTINGS[name]
    port = settings.model_fields["port"].default
    prefix = name.upper()
    assert SERVICES[name]["ports"] == [f"{port}:{port}"]
    assert SERVICES[name]["environment"][f"{prefix}_PORT"] == str(port)
    assert instruction(DOCKERFILES[name], "EXPOSE", ARGS[name]) == str(port)
    env = instruction(DOCKERFILES[name], "ENV", ARGS[name])
    assert f"TWOTOWER_PORT_VARIABLE={prefix}_PORT" in env and f"TWOTOWER_DEFAULT_PORT={port}" in env
    container = k8s_container("Deployment", name)
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert k8s("Service", name)["spec"]["ports"][0]["port"] == port
    assert k8s("ConfigMap", f"{name}-settings")["data"][f"{prefix}_PORT"] == str(port)
    # Both reach Chroma by its service name and container port.
    assert SERVICES[name]["environment"][f"{prefix}_CHROMA_HOST"] == "chroma"
    assert SERVICES[name]["environment"][f"{prefix}_CHROMA_PORT"] == "8000"
    assert k8s("ConfigMap", f"{name}-settings")["data"][f"{prefix}_CHROMA_HOST"] == "chroma"
    assert k8s("ConfigMap", f"{name}-settings")["data"][f"{prefix}_CHROMA_PORT"] == "8000"


@pytest.mark.parametrize("name", ["query", "ingest"])
def test_every_variable_is_a_setting_of_its_service(name: str) -> None:
    known = env_names(SETTINGS[name])
    prefix = name.upper() + "_"
    compose_vars = set(SERVICES[name]["environment"])
    assert compose_vars <= known, compose_vars - known
    configmap = set(k8s("ConfigMap", f"{name}-settings")["data"])
    secret_vars = {e["name"] for e in k8s_container("Deployment", name).get("env", [])}
    assert configmap | secret_vars <= known, (configmap | secret_vars) - known
    dockerfile_env = set(re.findall(r"\b([A-Z_]+)=", instruction(DOCKERFILES[name], "ENV", ARGS[name])))
    assert {v for v in dockerfile_env if v.startswith(prefix)} <= known


@pytest.mark.parametrize("name", ["query", "ingest"])
def test_weights_are_mounted_read_only_where_the_setting_points(name: str) -> None:
    weights_dir = SERVICES[name]["environment"][f"{name.upper()}_WEIGHTS_DIR"]
    assert f"weights:{weights_dir}:ro" in SERVICES[name]["volumes"]
    assert f"{name.upper()}_WEIGHTS_DIR={weights_dir}" in instruction(DOCKERFILES[name], "ENV", ARGS[name])
    container = k8s_container("Deployment", name)
    assert {"name": "weights", "mountPath": weights_dir, "readOnly": True} in container["volumeMounts"]


def test_the_ingest_api_key_has_no_default_anywhere() -> None:
    assert re.fullmatch(r"\$\{INGEST_API_KEY:\?[^}]+\}", SERVICES["ingest"]["environment"]["INGEST_API_KEY"])
    (key,) = [e for e in k8s_container("Deployment", "ingest")["env"] if e["name"] == "INGEST_API_KEY"]
    assert "secretKeyRef" in key["valueFrom"]
    assert "INGEST_API_KEY=\n" in (ROOT / ".env.example").read_text()
    assert "INGEST_API_KEY" not in k8s("ConfigMap", "ingest-settings")["data"]


def test_env_example_documents_exactly_what_compose_reads() -> None:
    used = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text()))
    documented = {
        line.split("=")[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if re.match(r"^[A-Z_]+=", line)
    }
    assert used == documented


@pytest.mark.parametrize("name", ["query", "ingest", "trainer"])
def test_images_are_slim_multi_stage_locked_cpu_torch_non_root_and_offline(name: str) -> None:
    path, args = DOCKERFILES[name], ARGS[name]
    assert set(stages(path)) == {"python:3.11-slim"}
    runs = [shlex.split(args) for kw, args in instructions(path) if kw == "RUN" and "pip install" in args]
    # Every pip install takes its dependencies from a lock, with hashes, or installs the project alone.
    assert all(("--require-hashes" in r) != ("--no-deps" in r) for r in runs), runs
    locks = {r[r.index("-r") + 1] for r in runs if "--require-hashes" in r}
    for lock in locks:
        copied = (
            f"requirements/{name}.lock /tmp/"
            if lock == "/tmp/service.lock"
            else f"requirements/{Path(lock).name} /tmp/"
        )
        assert ("COPY", copied + ("service.lock" if lock == "/tmp/service.lock" else "")) in instructions(
            path, args
        )
    # The venv the image runs is its build stage's: the serve lock (no PyTorch) for the services, the
    # train lock for the trainer. (The services' base-model stage uses the train lock only to export.)
    role = "train" if name == "trainer" else "service"
    steps = instructions(path, args)
    froms = [i for i, (kw, _) in enumerate(steps) if kw == "FROM"] + [len(steps)]
    build = froms.index(steps.index(("FROM", "python:3.11-slim AS build")))
    # pip itself first (requirements/pip.lock): venv's bundled pip mis-resolves hashed locks.
    installs = [shlex.split(a) for kw, a in steps[froms[build] : froms[build + 1]] if "--require-hashes" in a]
    assert [r[r.index("-r") + 1] for r in installs] == ["/tmp/pip.lock", f"/tmp/{role}.lock"]
    for start, end in itertools.pairwise(froms):
        stage = [shlex.split(a) for kw, a in steps[start:end] if "--require-hashes" in a]
        assert not stage or stage[0][stage[0].index("-r") + 1] == "/tmp/pip.lock", stage
    assert ("COPY", "--from=build /opt/venv /opt/venv") in steps[froms[-2] :]
    assert pinned("torch", "train").endswith("+cpu")
    if role == "service":
        assert "torch" not in read_lock(LOCKS[name])
        assert instruction(path, "ENV", args).count(f"{name.upper()}_MODELS_DIR=/models") == 1
    for r in runs:
        if "/tmp/train.lock" in r:  # torch: from deploy/wheels/ or PyTorch's CPU wheels
            assert r[r.index("--find-links") : r.index("--find-links") + 2] == ["--find-links", "/wheels"]
    assert "ARG TORCH_FIND_LINKS=https://download.pytorch.org/whl/cpu/torch/" in path.read_text()
    env = instruction(path, "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "TRANSFORMERS_OFFLINE=1" in env
    assert "PYTHONPATH" not in env  # the project is installed in the venv
    assert instruction(path, "USER") == "app"
    for keyword, copy in instructions(path, args):
        if keyword == "COPY" and not copy.startswith("--from"):
            for source in copy.split()[:-1]:
                assert (ROOT / source).exists(), f"{path}: COPY {source} does not exist"
    dockerfile = "deploy/trainer/Dockerfile" if name == "trainer" else "deploy/service/Dockerfile"
    assert SERVICES[name]["build"]["dockerfile"] == dockerfile
    assert SERVICES[name]["image"] == f"twotower-{name}:latest"
    workload = ("Job", "trainer") if name == "trainer" else ("Deployment", name)
    assert k8s_container(*workload)["image"] == f"twotower-{name}:latest"


def test_dockerignore_keeps_secrets_and_state_out_of_images() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".git", "data", "weights"} <= ignored


def test_readme_settings_table_lists_every_setting_and_no_other() -> None:
    readme = (ROOT / "docs" / "configuration.md").read_text()  # the settings table, linked from README
    for settings in SETTINGS.values():
        for name in env_names(settings):
            assert f"`{name}`" in readme, f"README does not document {name}"
    mentioned = set(re.findall(r"\b((?:QUERY|INGEST)_[A-Z_]+)\b", readme))
    known = set().union(*(env_names(s) for s in SETTINGS.values())) | {"INGEST_WORKERS", "QUERY_WORKERS"}
    assert mentioned <= known | {"INGEST_MAX_DOCUMENTS_PER_REQUEST"}, mentioned - known


def test_k8s_and_compose_declare_the_same_services() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in K8S}
    assert {
        ("StatefulSet", "chroma"),
        ("Deployment", "query"),
        ("Deployment", "ingest"),
        ("Job", "trainer"),
    } <= kinds
    assert ("HorizontalPodAutoscaler", "query") in kinds
    assert ("PersistentVolumeClaim", "weights") in kinds


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = set(re.findall(r"^([a-z0-9-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    used = set(re.findall(r"\bmake ([a-z0-9-]+)", readme))
    assert used and used <= targets, used - targets
    for module in set(re.findall(r"python -m ([a-z_.]+)", readme)):
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        path = Path(spec.origin)
        assert path.is_relative_to(ROOT), module  # one of the project's own modules
        if path.name == "__init__.py":
            assert (path.parent / "__main__.py").is_file(), module
    for path in re.findall(r"`((?:deploy|services|shared|training|tests)/[\w./-]+)`", readme):
        assert (ROOT / path).exists(), path
