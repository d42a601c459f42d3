"""What compose, Kubernetes and the code must agree on for a deployment to work: the commands each
runs, the variables each service reads, where the weights are, the Chroma server's version and
configuration, the ingest key's absence of a default, and the commands the docs tell a user to run.
Each check fails on a drift that breaks a deployment or misleads a reader; none restates a value."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import chromadb
import pytest
import yaml
from pydantic_settings import BaseSettings

from deploy.k8s.validate import manifests
from services.ingest.config import Settings as IngestSettings
from services.query.config import Settings as QuerySettings
from tests.deploy.dockerfiles import exec_form

ROOT = Path(__file__).resolve().parents[2]
SERVICES = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
K8S = [doc for _, doc in manifests()]
SETTINGS: dict[str, type[BaseSettings]] = {"query": QuerySettings, "ingest": IngestSettings}
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def k8s(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in K8S if d["kind"] == kind and d["metadata"]["name"] == name)


def k8s_container(kind: str, name: str) -> dict[str, Any]:
    return dict(k8s(kind, name)["spec"]["template"]["spec"]["containers"][0])


def workload(name: str) -> dict[str, Any]:
    return k8s_container("Job", "trainer") if name == "trainer" else k8s_container("Deployment", name)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Compose volumes as {container path: source} (a source may be a ${VAR:-default})."""
    pairs = [re.sub(r":(ro|rw)$", "", v).rpartition(":") for v in service.get("volumes", [])]
    return {target: source for source, _, target in pairs}


def env_names(settings: type[BaseSettings]) -> set[str]:
    prefix = settings.model_config["env_prefix"]
    return {f"{prefix}{field}".upper() for field in settings.model_fields}


def test_the_chroma_server_is_the_client_version() -> None:
    # Client and server of different versions disagree on the HTTP API.
    image = f"chromadb/chroma:{chromadb.__version__}"
    assert SERVICES["chroma"]["image"] == image
    assert k8s_container("StatefulSet", "chroma")["image"] == image


def test_chroma_runs_on_one_configuration_everywhere() -> None:
    # Compose mounts deploy/chroma/config.yaml; Kubernetes carries a copy of its text in a ConfigMap.
    assert mounts(SERVICES["chroma"])["/config.yaml"] == "./deploy/chroma/config.yaml"
    text = (ROOT / "deploy" / "chroma" / "config.yaml").read_text()
    assert k8s("ConfigMap", "chroma-config")["data"]["config.yaml"] == text


@pytest.mark.parametrize("name", ["query", "ingest", "trainer"])
def test_compose_and_kubernetes_run_the_same_command(name: str) -> None:
    # The local stack runs the compose command itself; tests/deploy start it and check it serves.
    command = SERVICES[name]["command"]
    assert workload(name)["command"] == command
    if name != "trainer":
        assert (ROOT / command[2]).is_file()  # the gunicorn config it names


def test_the_trainer_image_runs_its_command_and_publishes_into_the_weights_volume() -> None:
    from training.train import parse_args

    trainer = SERVICES["trainer"]
    assert exec_form(ROOT / trainer["build"]["dockerfile"], "CMD") == trainer["command"]
    cfg = parse_args(trainer["command"][3:])
    volumes = mounts(trainer)
    assert volumes[cfg.weights_dir] == "weights"
    assert f"weights:{cfg.weights_dir}" in trainer["volumes"]  # read-write: it publishes there
    assert cfg.data in volumes and cfg.wandb_dir in volumes


@pytest.mark.parametrize("name", ["query", "ingest"])
def test_every_variable_is_a_setting_of_its_service(name: str) -> None:
    # A misspelt variable is silently ignored by the service.
    known = env_names(SETTINGS[name])
    compose_vars = set(SERVICES[name]["environment"])
    assert compose_vars <= known, compose_vars - known
    configmap = set(k8s("ConfigMap", f"{name}-settings")["data"])
    secret_vars = {e["name"] for e in workload(name).get("env", [])}
    assert configmap | secret_vars <= known, (configmap | secret_vars) - known


@pytest.mark.parametrize("name", ["query", "ingest"])
def test_the_weights_are_mounted_where_the_setting_points(name: str) -> None:
    weights_dir = SERVICES[name]["environment"][f"{name.upper()}_WEIGHTS_DIR"]
    assert mounts(SERVICES[name])[weights_dir] == "weights"
    k8s_dir = k8s("ConfigMap", f"{name}-settings")["data"].get(f"{name.upper()}_WEIGHTS_DIR", weights_dir)
    assert "weights" in {m["name"] for m in workload(name)["volumeMounts"] if m["mountPath"] == k8s_dir}


def test_the_ingest_api_key_has_no_default_anywhere() -> None:
    assert re.fullmatch(r"\$\{INGEST_API_KEY:\?[^}]+\}", SERVICES["ingest"]["environment"]["INGEST_API_KEY"])
    (key,) = [e for e in workload("ingest")["env"] if e["name"] == "INGEST_API_KEY"]
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


def test_dockerignore_keeps_secrets_and_state_out_of_images() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".git", "data", "weights"} <= ignored


def test_the_docs_name_every_setting_and_no_other() -> None:
    text = "\n".join(path.read_text() for path in DOCS)
    for settings in SETTINGS.values():
        for name in env_names(settings):
            assert f"`{name}`" in text, f"neither README.md nor docs/ document {name}"
    mentioned = set(re.findall(r"\b((?:QUERY|INGEST)_[A-Z_]+)\b", text))
    known = set().union(*(env_names(s) for s in SETTINGS.values())) | {"INGEST_WORKERS", "QUERY_WORKERS"}
    assert mentioned <= known | {"INGEST_MAX_DOCUMENTS_PER_REQUEST"}, mentioned - known


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_commands_the_docs_give_exist(doc: Path) -> None:
    text = doc.read_text()
    targets = set(re.findall(r"^([a-z0-9-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    # As a command: in backticks or at the start of a line of a code block.
    used = set(re.findall(r"(?:^\s*|`)make ([a-z0-9-]+)", text, re.MULTILINE))
    assert used <= targets, used - targets
    for module in set(re.findall(r"python -m ([a-z_.]+)", text)):
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        path = Path(spec.origin)
        if not path.is_relative_to(ROOT):
            continue  # a tool's module (pip, pytest): installed, which is all a reader needs
        if path.name == "__init__.py":
            assert (path.parent / "__main__.py").is_file(), module
    for path in re.findall(r"`((?:deploy|services|shared|training|tests|bench)/[\w./-]+)`", text):
        module = path.rsplit(".", 1)[0] + ".py"  # or a name in a module: services/x/y.name
        assert (ROOT / path).exists() or (ROOT / module).exists(), path
