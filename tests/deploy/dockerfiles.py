"""Reading Dockerfiles in tests: instructions with their line continuations joined."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path


def instructions(path: Path, build_args: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, continuation lines joined, ${ARG} of
    `build_args` substituted."""
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
        for name, value in (build_args or {}).items():
            line = re.sub(r"\$\{?" + name + r"\b\}?", value, line)
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def instruction(path: Path, keyword: str, build_args: Mapping[str, str] | None = None) -> str:
    """The arguments of the last KEYWORD instruction (the one that takes effect)."""
    found = [args for kw, args in instructions(path, build_args) if kw == keyword]
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
