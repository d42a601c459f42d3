"""How deploy/local/compose.py reads docker-compose.yml: interpolation as compose does it, and the
mapping of container hosts, ports and volumes to local ones (used by `make run` and tests/deploy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.local.compose import (
    ComposeError,
    LocalLayout,
    interpolate,
    load_compose,
    local_services,
    read_dotenv,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        ("${A}", {"A": "1"}, "1"),
        ("$A/x", {"A": "1"}, "1/x"),
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A:-d}", {"A": "v"}, "v"),
        ('${A:-["*"]}', {}, '["*"]'),
        ("${A:?boom}", {"A": "k"}, "k"),
        ("$${A}", {"A": "1"}, "${A}"),
        ("${MISSING}", {}, ""),
    ],
)
def test_interpolation_follows_compose(text: str, variables: dict[str, str], expected: str) -> None:
    assert interpolate(text, variables) == expected


@pytest.mark.parametrize("text", ["${A:?set A in .env}", "${A?set A in .env}"])
def test_required_variable_unset_is_an_error_naming_it(text: str) -> None:
    with pytest.raises(ComposeError, match=r"A: set A in \.env"):
        interpolate(text, {})


def test_empty_required_variable_is_an_error_only_with_colon() -> None:
    with pytest.raises(ComposeError):
        interpolate("${A:?x}", {"A": ""})
    assert interpolate("${A?x}", {"A": ""}) == ""


def test_dotenv(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('# comment\n\nA=1\nB = \'two words\'\nC="q"\nD=\nE=["*"]\nnot a pair\n')
    assert read_dotenv(env) == {"A": "1", "B": "two words", "C": "q", "D": "", "E": '["*"]'}
    assert read_dotenv(tmp_path / "missing") == {}


def test_the_ingest_api_key_has_no_default() -> None:
    with pytest.raises(ComposeError, match="INGEST_API_KEY"):
        local_services(variables={})


def test_repository_compose_maps_to_local_processes(tmp_path: Path) -> None:
    layout = LocalLayout(
        ports={"chroma": 9102, "ingest": 9101, "query": 9100},
        data_dir=tmp_path / "data",
        weights_dir=tmp_path / "w",
    )
    services = local_services(layout, variables={"INGEST_API_KEY": "k", "QUERY_WORKERS": "3"})
    assert list(services) == ["chroma", "ingest", "query"]  # chroma first; the trainer is opt-in

    # The official image runs `chroma run /config.yaml`; compose mounts deploy/chroma/config.yaml
    # there, and Chroma's own variables override the data directory, host and port.
    chroma = services["chroma"]
    assert chroma.argv == ["chroma", "run", str(ROOT / "deploy" / "chroma" / "config.yaml")]
    assert chroma.ready_url == "http://127.0.0.1:9102/api/v2/heartbeat"
    assert chroma.env == {
        "RUST_LOG": "warn",  # the compose environment, as is
        "CHROMA_PERSIST_PATH": str(tmp_path / "data" / "chroma"),
        "CHROMA_LISTEN_ADDRESS": "127.0.0.1",
        "CHROMA_PORT": "9102",
    }

    compose = load_compose()
    for name, port in (("query", 9100), ("ingest", 9101)):
        service = services[name]
        prefix = name.upper()
        assert service.argv == compose["services"][name]["command"]  # the compose command, verbatim
        assert service.env[f"{prefix}_CHROMA_HOST"] == "127.0.0.1"
        assert service.env[f"{prefix}_CHROMA_PORT"] == "9102"
        assert service.env[f"{prefix}_HOST"] == "127.0.0.1"
        assert service.env[f"{prefix}_PORT"] == str(port)
        assert service.env[f"{prefix}_WEIGHTS_DIR"] == str(tmp_path / "w")
        assert service.url == f"http://127.0.0.1:{port}"
    assert services["ingest"].env["INGEST_API_KEY"] == "k"
    assert services["query"].env["QUERY_WORKERS"] == "3"  # ${QUERY_WORKERS:-2}, from .env or the shell
    assert services["ingest"].env["INGEST_WORKERS"] == "1"  # the compose default


def test_mapping_is_driven_by_the_file_not_by_names() -> None:
    compose: dict[str, Any] = {
        "services": {
            "db": {"image": "chromadb/chroma:1.5.9", "volumes": ["store:/data"], "expose": ["8000"]},
            "api": {
                "command": "gunicorn -c conf.py 'app:create()'",
                "ports": ["9000:7000"],
                "environment": [
                    "API_DB_HOST=db",
                    "API_DB_PORT=8000",
                    "API_PORT=7000",
                    "API_MODELS=/m/sub",
                    "API_X=7000",
                ],
                "volumes": ["./models:/m:ro"],
            },
            "job": {"profiles": ["train"], "command": ["x"]},
        }
    }
    root = Path("/repo")
    layout = LocalLayout(root=root, ports={"db": 1, "api": 2}, data_dir=root / "data")
    with pytest.raises(ComposeError, match="no local directory for compose volume 'store'"):
        local_services(layout, compose=compose, variables={})
    compose["services"]["db"]["volumes"] = ["./store:/data"]
    services = local_services(layout, compose=compose, variables={})
    assert services["db"].argv[:4] == ["chroma", "run", "--path", "/repo/store"]
    assert services["db"].ready_url == "http://127.0.0.1:1/api/v2/heartbeat"
    api = services["api"]
    assert api.argv == ["gunicorn", "-c", "conf.py", "app:create()"]
    # API_X happens to equal the container port but is not a port variable: left alone.
    assert api.env == {
        "API_DB_HOST": "127.0.0.1",
        "API_DB_PORT": "1",
        "API_PORT": "2",
        "API_MODELS": "/repo/models/sub",
        "API_X": "7000",
    }


def test_chroma_without_a_data_volume_is_refused() -> None:
    compose = {"services": {"chroma": {"image": "chromadb/chroma:1.5.9", "volumes": ["x:/chroma/chroma"]}}}
    with pytest.raises(ComposeError, match="/data"):
        local_services(LocalLayout(ports={"chroma": 1}), compose=compose, variables={})
