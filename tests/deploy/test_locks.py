"""The lock files are what `make install`, CI and the Dockerfiles install with `--require-hashes`: each
must be complete, current with its input file, hashed, CPU-only for torch, and agree with the others
and with the environment the tests run in."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy.locks import INPUTS, LOCKS, ROOT, canonical, read_inputs, read_lock

LOCKED = {name: read_lock(path) for name, path in LOCKS.items()}
# `make lock` leaves the thin client out of dev.lock: the full chromadb there provides the same module.
NOT_EMITTED = {"dev": {"chromadb-client"}}


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_pin_of_the_input_is_locked_at_that_version(name: str) -> None:
    # Fails when someone adds or changes a pin in requirements*.txt and does not run `make lock`.
    locked = LOCKED[name]
    for package, version in read_inputs(INPUTS[name]).items():
        if package in NOT_EMITTED.get(name, set()):
            continue
        assert package in locked, (
            f"{package} is pinned in {INPUTS[name].name} but not in {name}.lock: make lock"
        )
        assert locked[package].version == version, (
            f"{package}: {version} in the input, {locked[package]} locked"
        )


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_locked_package_has_a_hash(name: str) -> None:
    assert LOCKED[name], f"{name}.lock is empty"
    unhashed = [p for p, locked in LOCKED[name].items() if not locked.hashes]
    assert not unhashed, f"{name}.lock: no hash for {unhashed}"


def test_a_package_has_one_version_in_every_lock() -> None:
    versions: dict[str, set[str]] = {}
    for locked in LOCKED.values():
        for package, entry in locked.items():
            versions.setdefault(package, set()).add(entry.version)
    assert not {p: v for p, v in versions.items() if len(v) > 1}


def test_the_chroma_client_and_server_never_share_an_environment() -> None:
    # Both distributions install the `chromadb` module: one would overwrite the other's files.
    for name in ("query", "ingest", "train"):
        assert "chromadb-client" in LOCKED[name] and "chromadb" not in LOCKED[name], name
    for name in ("dev", "chroma"):
        assert "chromadb" in LOCKED[name] and "chromadb-client" not in LOCKED[name], name
    assert LOCKED["query"]["chromadb-client"].version == LOCKED["dev"]["chromadb"].version


def test_torch_is_the_cpu_build_and_no_cuda_library_is_locked() -> None:
    for name, locked in LOCKED.items():
        assert not [p for p in locked if p.startswith(("nvidia-", "triton"))], name
        if "torch" in locked:
            assert locked["torch"].version.endswith("+cpu"), f"{name}.lock: torch {locked['torch'].version}"
    # The wheel this machine installs from is exactly a locked file.
    wheels = sorted(Path("/opt/wheels").glob(f"torch-{LOCKED['dev']['torch'].version}-cp311-*.whl"))
    if not wheels:
        pytest.skip("no local torch wheel to compare with")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    assert f"sha256:{digest}" in LOCKED["dev"]["torch"].hashes


def test_this_environment_is_dev_lock() -> None:
    """What the tests run in is what `make install` installs (a version changed by hand shows here)."""
    drift = {}
    for package, entry in LOCKED["dev"].items():
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or canonical(installed) != canonical(entry.version):
            drift[package] = (entry.version, installed)
    assert not drift, f"locked vs installed: {drift} (make install)"
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("chromadb-client")


def test_the_project_declares_what_the_services_pin() -> None:
    """pyproject.toml's dependencies name the services' pins (both services' inputs), so that the project
    installed without a lock still runs; its `torch` extra is in the training lock."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {canonical(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]) for r in requirements}

    # chromadb: the client or the full package, depending on the lock (see pyproject.toml).
    assert names(project["dependencies"]) == set(read_inputs(INPUTS["ingest"])) - {
        "chromadb-client",
        "setuptools",
    }
    assert names(project["optional-dependencies"]["torch"]) <= set(LOCKED["train"])
