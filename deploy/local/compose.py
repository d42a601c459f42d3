"""docker-compose.yml read as the recipe for running the same services as local processes.

Each service runs its own compose `command` with its `environment` interpolated as compose does it
(caller's environment over .env) and mapped to local terms: a value naming another service becomes
the local host (its sibling `..._PORT` that service's local port), `0.0.0.0` the local host, the
service's own port its local port, a path in a mounted volume that volume's local directory. Chroma
(the official image, no `command`) becomes `chroma run` on the file mounted at /config.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHROMA_CONFIG = ROOT / "deploy" / "chroma" / "config.yaml"
# The query service's /readyz stays 503 until its collection exists (until something is ingested).
READY_PATHS = {"chroma": "/api/v2/heartbeat", "ingest": "/readyz", "query": "/healthz"}
_VAR = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


class ComposeError(Exception):
    """The compose file cannot be mapped (a required variable unset, an unknown volume...)."""


@dataclass(frozen=True)
class LocalLayout:  # where the local processes listen and keep their state
    ports: Mapping[str, int]
    data_dir: Path
    weights_dir: Path
    host: str = "127.0.0.1"

    def volume_dir(self, source: str) -> Path:
        """The local directory of a named volume, or a bind mount's path (relative to the root)."""
        dirs = {"chroma-data": self.data_dir / "chroma", "weights": self.weights_dir, "runs": ROOT / "runs"}
        if source.startswith((".", "/")) or source in dirs:
            return dirs.get(source) or (ROOT / source).resolve()
        raise ComposeError(f"no local directory for compose volume {source!r}")


@dataclass
class LocalService:
    name: str
    argv: list[str]
    env: dict[str, str]  # the mapped compose environment only (callers add their own)
    url: str
    ready_url: str


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error}; hand-written: python-dotenv has no :?."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.groups()
        if variables.get(name) or op is None:
            return variables.get(name, "")
        if op == "?":
            raise ComposeError(f"{name}: {arg or 'required variable is not set'}")
        return arg

    return _VAR.sub(sub, value)


def environment(service: dict, variables: Mapping[str, str], caller: Mapping[str, str]) -> dict[str, str]:
    """The compose environment, interpolated, less the ${X:-default} fallbacks of keys the caller sets
    (the caller's environment, which the launcher passes on, wins over those)."""
    env: dict[str, str] = {}
    for key, raw in service.get("environment", {}).items():
        names = [m[0] for m in _VAR.findall(str(raw))]
        if key in caller and names and not any(variables.get(n) for n in names):
            continue
        env[str(key)] = interpolate(str(raw), variables)
    return env


def _mounts(service: dict) -> dict[str, str]:  # container path -> volume name or host path
    return {spec.split(":")[1]: spec.split(":")[0] for spec in map(str, service.get("volumes", []))}


def map_environment(name: str, services: dict, env: dict[str, str], layout: LocalLayout) -> dict[str, str]:
    """One service's compose environment in local hosts, ports and directories."""
    service = services[name]
    own_port = str(service.get("ports", service.get("expose", ["0"]))[0]).split(":")[-1]
    siblings = {
        k.removesuffix("_HOST") + "_PORT": v for k, v in env.items() if k.endswith("_HOST") and v in services
    }
    mapped, mounts = {}, _mounts(service)
    for key, value in env.items():
        mount = next((t for t in mounts if value == t or value.startswith(t + "/")), None)
        if key in siblings:
            value = str(layout.ports[siblings[key]])
        elif key.endswith("_HOST") and (value in services or value == "0.0.0.0"):
            value = layout.host
        elif key.endswith("_PORT") and value == own_port:
            value = str(layout.ports[name])
        elif mount is not None:
            value = str(layout.volume_dir(mounts[mount]) / value[len(mount) :].lstrip("/"))
        mapped[key] = value
    return mapped


def chroma_server(
    data: str | Path, host: str, port: int, config: str | Path = CHROMA_CONFIG, executable: str = "chroma"
) -> tuple[list[str], dict[str, str]]:
    """A local `chroma run` on `config`: data directory, host and port as Chroma's environment overrides."""
    env = {"CHROMA_PERSIST_PATH": str(data), "CHROMA_LISTEN_ADDRESS": host, "CHROMA_PORT": str(port)}
    return [executable, "run", str(config)], env


def local_services(
    layout: LocalLayout, variables: Mapping[str, str], caller: Mapping[str, str] | None = None
) -> dict[str, LocalService]:
    """Every service of the default profile (the trainer is opt-in), Chroma first."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    result: dict[str, LocalService] = {}
    for name, service in sorted(services.items(), key=lambda kv: "command" in kv[1]):
        if service.get("profiles"):
            continue
        try:
            env = environment(service, variables, caller or {})
            if "command" in service:  # ours; else the Chroma image
                argv, env = [str(a) for a in service["command"]], map_environment(name, services, env, layout)
            else:
                data, config = (layout.volume_dir(_mounts(service)[p]) for p in ("/data", "/config.yaml"))
                argv, overrides = chroma_server(data, layout.host, layout.ports[name], config)
                env |= overrides
        except (ComposeError, KeyError) as exc:
            raise ComposeError(f"compose service {name!r}: {exc}") from exc
        url = f"http://{layout.host}:{layout.ports[name]}"
        result[name] = LocalService(name, argv, env, url, url + READY_PATHS[name])
    return result
