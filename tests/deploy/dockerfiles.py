"""Reading Dockerfiles in tests: instructions with their line continuations joined."""

from __future__ import annotations

import json
from pathlib import Path


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def instruction(path: Path, keyword: str) -> str:
    """The arguments of the last KEYWORD instruction (the one that takes effect)."""
    found = [args for kw, args in instructions(path) if kw == keyword]
    assert found, f"{path}: no {keyword}"
    return found[-1]


def exec_form(path: Path, keyword: str) -> list[str]:
    """A CMD / ENTRYPOINT in JSON (exec) form, as a list."""
    value = json.loads(instruction(path, keyword))
    assert isinstance(value, list)
    return [str(v) for v in value]


def stages(path: Path) -> list[str]:
    """The base image of each FROM, in order."""
    return [args.split()[0] for kw, args in instructions(path) if kw == "FROM"]
