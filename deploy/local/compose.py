"""docker-compose.yml, read as the recipe for running the same services outside Docker.

The local stack (`make run`) and tests/deploy both go through `local_services()`: each compose
service's own `command`, with its `environment` interpolated as compose does it (${VAR:-default},
${VAR:?error}, from .env and the shell) and then mapped from container terms to local ones:

  - a value naming another compose service (`chroma`) becomes the local host, and the sibling
    `..._PORT` variable that port of that service's local process;
  - the service's own bind host (`0.0.0.0`) becomes the local host, and its own port variable
    (the container port it publishes) becomes its local port;
  - a path inside a mounted volume (`/weights`) becomes the local directory for that volume.

The Chroma service is the official image, which has no `command` here: it becomes `chroma run`
on the file mounted at its /config.yaml (deploy/chroma/config.yaml), the same server at the same
version with the same configuration, its data directory, host and port set through Chroma's own
environment overrides (`chroma_server`).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CHROMA_IMAGE = "chromadb/chroma"
# The Chroma server's configuration: compose mounts it at the image's /config.yaml, k8s carries it
# in a ConfigMap, and every local `chroma run` (make run, the tests, the benchmark) runs on it.
CHROMA_CONFIG = ROOT / "deploy" / "chroma" / "config.yaml"
CHROMA_CONFIG_MOUNT = "/config.yaml"

# Readiness as the launcher waits for it. The query service's /readyz stays 503 until its model
# version's collection exists (i.e. until something was ingested), so /healthz is what it waits on.
CHROMA_READY_PATH = "/api/v2/heartbeat"
READY_PATHS = {"ingest": "/readyz", "query": "/healthz"}


class ComposeError(Exception):
    """The compose file cannot be mapped (a required variable unset, an unknown volume...)."""


@dataclass(frozen=True)
class LocalLayout:
    """Where the local processes listen and keep their state."""

    root: Path = ROOT
    host: str = "127.0.0.1"
    ports: Mapping[str, int] = field(default_factory=lambda: {"chroma": 8002, "ingest": 8001, "query": 8000})
    data_dir: Path = ROOT / "data"
    weights_dir: Path = ROOT / "weights"

    def volume_dir(self, volume: str) -> Path:
        """The local directory standing in for a named compose volume."""
        dirs = {
            "chroma-data": self.data_dir / "chroma",
            "weights": self.weights_dir,
            "runs": self.root / "runs",
        }
        if volume not in dirs:
            raise ComposeError(f"no local directory for compose volume {volume!r}")
        return dirs[volume]


@dataclass
class LocalService:
    name: str
    argv: list[str]
    env: dict[str, str]  # the mapped compose environment only (callers add the base environment)
    url: str  # http://host:port
    ready_path: str = "/healthz"

    @property
    def ready_url(self) -> str:
        return self.url + self.ready_path


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's variable substitution: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, and $$ for a literal $."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        current = variables.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-"):
            return arg if missing else str(current)
        if op in (":?", "?"):
            if missing:
                raise ComposeError(f"{name}: {arg or 'required variable is not set'}")
            return str(current)
        return current or ""

    return _VAR.sub(sub, value)


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (as compose reads .env); comments and blanks skipped."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def compose_variables(root: Path = ROOT, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What compose interpolates with: .env, overridden by the shell's environment."""
    return {**read_dotenv(root / ".env"), **(os.environ if environ is None else environ)}


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "services" not in data:
        raise ComposeError(f"{path}: no services")
    return data


def container_port(service: Mapping[str, Any]) -> int:
    """The port a service listens on inside its container: from `ports` (HOST:CONTAINER) or `expose`."""
    for spec in service.get("ports", []):
        return int(str(spec).split(":")[-1].split("/")[0])
    for spec in service.get("expose", []):
        return int(str(spec).split("/")[0])
    raise ComposeError("service publishes and exposes no port")


def volume_mounts(service: Mapping[str, Any], variables: Mapping[str, str] | None = None) -> dict[str, str]:
    """Container path -> named volume (or host path) for each entry of `volumes` (interpolated)."""
    mounts: dict[str, str] = {}
    for spec in service.get("volumes", []):
        parts = interpolate(str(spec), variables or {}).split(":")
        mounts[parts[1]] = parts[0]
    return mounts


def environment(service: Mapping[str, Any], variables: Mapping[str, str]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): interpolate(str(v), variables) for k, v in env.items()}


def command(service: Mapping[str, Any]) -> list[str]:
    cmd = service.get("command")
    if cmd is None:
        raise ComposeError("service has no command")
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def _local_path(mounted: str, rest: str, layout: LocalLayout) -> str:
    # A bind mount names a host path (relative to the compose file); anything else is a named volume.
    bind = mounted.startswith((".", "/"))
    base = (layout.root / mounted).resolve() if bind else layout.volume_dir(mounted)
    return str(base / rest) if rest else str(base)


def map_environment(
    name: str,
    compose: Mapping[str, Any],
    env: dict[str, str],
    layout: LocalLayout,
    variables: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """One service's interpolated compose environment, in local hosts, ports and directories."""
    services = compose["services"]
    own_port = str(container_port(services[name]))
    mounts = volume_mounts(services[name], variables)
    mapped = dict(env)
    # Another service by name (QUERY_CHROMA_HOST=chroma): local host, and its sibling port variable.
    handled: set[str] = set()
    for key, value in env.items():
        if key.endswith("_HOST") and value in services:
            prefix = key.removesuffix("_HOST")
            mapped[key] = layout.host
            handled.add(key)
            if f"{prefix}_PORT" in env:
                mapped[f"{prefix}_PORT"] = str(layout.ports[value])
                handled.add(f"{prefix}_PORT")
    for key, value in env.items():
        if key in handled:
            continue
        if key.endswith("_HOST") and value == "0.0.0.0":
            mapped[key] = layout.host
        elif key.endswith("_PORT") and value == own_port:
            mapped[key] = str(layout.ports[name])
        else:
            for target, mounted in mounts.items():
                if value == target or value.startswith(target + "/"):
                    mapped[key] = _local_path(mounted, value[len(target) :].lstrip("/"), layout)
    return mapped


def chroma_server(
    data: str | Path,
    host: str,
    port: int,
    config: str | Path | None = CHROMA_CONFIG,
    executable: str = "chroma",
) -> tuple[list[str], dict[str, str]]:
    """The argv and the environment of a local `chroma run`: on `config`, with the data directory,
    host and port as Chroma's environment overrides (its CLI refuses --path, --host and --port next
    to a config file); with no config, Chroma's defaults and those three flags."""
    if config is None:
        return [executable, "run", "--path", str(data), "--host", host, "--port", str(port)], {}
    env = {"CHROMA_PERSIST_PATH": str(data), "CHROMA_LISTEN_ADDRESS": host, "CHROMA_PORT": str(port)}
    return [executable, "run", str(config)], env


def chroma_command(
    name: str, service: Mapping[str, Any], layout: LocalLayout, executable: str = "chroma"
) -> tuple[list[str], dict[str, str]]:
    """`chroma run` standing in for the official image: on the file mounted at its /config.yaml
    (none mounted: the image's own, Chroma's defaults), on the directory of its /data volume."""
    mounts = volume_mounts(service)
    data = mounts.get("/data")
    if data is None:
        raise ComposeError("the chroma service must mount a volume at /data (where Chroma 1.x persists)")
    config = mounts.get(CHROMA_CONFIG_MOUNT)
    return chroma_server(
        _local_path(data, "", layout),
        layout.host,
        layout.ports[name],
        None if config is None else _local_path(config, "", layout),
        executable,
    )


def _is_chroma(service: Mapping[str, Any]) -> bool:
    return str(service.get("image", "")).startswith(CHROMA_IMAGE + ":")


def local_services(
    layout: LocalLayout | None = None,
    compose: Mapping[str, Any] | None = None,
    variables: Mapping[str, str] | None = None,
    chroma_executable: str = "chroma",
) -> dict[str, LocalService]:
    """Every service of the default profile (the trainer is opt-in), in start order: Chroma first."""
    layout = layout or LocalLayout()
    compose = compose if compose is not None else load_compose(layout.root / "docker-compose.yml")
    variables = variables if variables is not None else compose_variables(layout.root)
    result: dict[str, LocalService] = {}
    for name, service in sorted(compose["services"].items(), key=lambda kv: not _is_chroma(kv[1])):
        if service.get("profiles"):
            continue
        if name not in layout.ports:
            raise ComposeError(f"no local port for compose service {name!r}")
        url = f"http://{layout.host}:{layout.ports[name]}"
        try:
            if _is_chroma(service):
                argv, overrides = chroma_command(name, service, layout, chroma_executable)
                result[name] = LocalService(
                    name,
                    argv,
                    # Nothing in the compose environment names a host, port or path.
                    {**environment(service, variables), **overrides},
                    url,
                    CHROMA_READY_PATH,
                )
            else:
                env = map_environment(name, compose, environment(service, variables), layout, variables)
                result[name] = LocalService(
                    name, command(service), env, url, READY_PATHS.get(name, "/healthz")
                )
        except ComposeError as exc:
            raise ComposeError(f"compose service {name!r}: {exc}") from exc
    return result
