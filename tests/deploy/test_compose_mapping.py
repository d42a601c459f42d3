"""How deploy/local/compose.py reads docker-compose.yml for `make run`: compose's interpolation, the
rule between the caller's environment and the compose environment, container terms made local."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy.local.compose import ComposeError, LocalLayout, interpolate, local_services

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        ("${A}", {"A": "1"}, "1"),
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A:-d}", {"A": "v"}, "v"),
        ('${A:-["*"]}', {}, '["*"]'),
        ("${A:?boom}", {"A": "k"}, "k"),
        ("x${MISSING}y", {}, "xy"),
    ],
)
def test_interpolation_follows_compose(text: str, variables: dict[str, str], expected: str) -> None:
    assert interpolate(text, variables) == expected


@pytest.mark.parametrize("value", [None, ""])
def test_a_required_variable_unset_or_empty_is_an_error_naming_it(value: str | None) -> None:
    variables = {} if value is None else {"INGEST_API_KEY": value}
    with pytest.raises(ComposeError, match=r"ingest.*INGEST_API_KEY"):
        local_services(LocalLayout({"chroma": 1, "ingest": 2, "query": 3}, Path("d"), Path("w")), variables)


def test_compose_services_become_local_processes(tmp_path: Path) -> None:
    layout = LocalLayout({"chroma": 9102, "ingest": 9101, "query": 9100}, tmp_path / "data", tmp_path / "w")
    services = local_services(layout, {"INGEST_API_KEY": "k", "QUERY_WORKERS": "3"})
    assert list(services) == ["chroma", "ingest", "query"]  # Chroma first; the trainer is opt-in
    chroma = services["chroma"]
    assert chroma.argv == ["chroma", "run", str(ROOT / "deploy" / "chroma" / "config.yaml")]
    assert chroma.env["CHROMA_PERSIST_PATH"] == str(tmp_path / "data" / "chroma")
    assert (chroma.env["CHROMA_PORT"], chroma.env["CHROMA_LISTEN_ADDRESS"]) == ("9102", "127.0.0.1")
    for name, port in (("query", 9100), ("ingest", 9101)):
        env, prefix = services[name].env, name.upper()
        assert services[name].argv == COMPOSE[name]["command"]
        assert (env[f"{prefix}_HOST"], env[f"{prefix}_PORT"]) == ("127.0.0.1", str(port))
        # QUERY_CHROMA_PORT is 8000 in compose, the query service's own port too: still Chroma's.
        assert (env[f"{prefix}_CHROMA_HOST"], env[f"{prefix}_CHROMA_PORT"]) == ("127.0.0.1", "9102")
        assert env[f"{prefix}_WEIGHTS_DIR"] == str(tmp_path / "w")
    assert services["ingest"].env["INGEST_API_KEY"] == "k"
    assert services["query"].env["QUERY_WORKERS"] == "3"
    assert services["ingest"].env["INGEST_WORKERS"] == "1"  # the compose default


def test_the_caller_wins_over_a_compose_default_and_compose_over_the_caller_elsewhere() -> None:
    layout = LocalLayout({"chroma": 1, "ingest": 2, "query": 3}, Path("d"), Path("w"))
    caller = {"QUERY_LOG_LEVEL": "debug", "QUERY_CHROMA_HOST": "elsewhere", "INGEST_LOG_LEVEL": "debug"}
    # LOG_LEVEL from .env: compose's ${LOG_LEVEL:-info} is no longer a mere default.
    variables = {"INGEST_API_KEY": "k", **caller}
    query = local_services(layout, variables, caller)["query"].env
    assert "QUERY_LOG_LEVEL" not in query  # left to the caller's environment
    assert query["QUERY_CHROMA_HOST"] == "127.0.0.1"  # compose fixes it: compose wins
    ingest = local_services(layout, {**variables, "LOG_LEVEL": "warning"}, caller)["ingest"].env
    assert ingest["INGEST_LOG_LEVEL"] == "warning"


def test_an_unknown_volume_is_refused() -> None:
    with pytest.raises(ComposeError, match="no local directory for compose volume 'store'"):
        LocalLayout({}, Path("d"), Path("w")).volume_dir("store")
