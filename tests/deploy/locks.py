"""Reading the lock files (requirements/*.lock, written by `make lock`) and their inputs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("query", "ingest", "train", "dev", "chroma", "pip")
LOCKS = {name: ROOT / "requirements" / f"{name}.lock" for name in NAMES}
# Each lock and the input file it is resolved from (Makefile, target `lock`).
INPUTS = {
    "query": ROOT / "requirements.txt",
    "ingest": ROOT / "requirements" / "ingest.in",
    "train": ROOT / "requirements-train.txt",
    "dev": ROOT / "requirements-dev.txt",
    "chroma": ROOT / "requirements" / "chroma.in",
    "pip": ROOT / "requirements" / "pip.in",  # pip itself, installed before any other lock
}


@dataclass(frozen=True)
class Locked:
    version: str
    hashes: tuple[str, ...]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, Locked]:
    """name -> version and hashes. Fails on any entry that is not `name==version` with hashes."""
    text = path.read_text().replace("\\\n", " ")  # join continuation lines
    result: dict[str, Locked] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", requirement)
        assert match, f"{path.name}: not an exact pin: {line[:120]}"
        assert all(o.startswith("--hash=sha256:") for o in options), f"{path.name}: {line[:120]}"
        result[canonical(match[1])] = Locked(match[2], tuple(o.removeprefix("--hash=") for o in options))
    return result


def read_inputs(path: Path) -> dict[str, str]:
    """The exact pins of an input file, following `-r` includes: name -> version."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins |= read_inputs(path.parent / line[3:].strip())
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: not an exact pin: {line}"
        pins[canonical(name.split("[")[0].strip())] = version.strip()
    return pins
