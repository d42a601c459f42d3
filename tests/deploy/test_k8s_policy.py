"""deploy/k8s: only the services and the trainer and backfill Jobs reach Chroma (NetworkPolicy), every probe has
an explicit timeout, and the validator catches a policy or a probe that breaks either rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy.k8s.validate import K8S_DIR, WORKLOADS, Manifest, manifests, pod_labels, selects, validate


def admitted(docs: list[tuple[Path, Manifest]], target: str) -> set[str] | None:
    """Names of the workloads whose pods the NetworkPolicies let reach workload `target`'s pods;
    None when no policy selects them (every pod may)."""
    workloads = {doc["metadata"]["name"]: doc for _, doc in docs if doc["kind"] in WORKLOADS}
    policies = [
        doc
        for _, doc in docs
        if doc["kind"] == "NetworkPolicy"
        and selects(doc["spec"]["podSelector"], pod_labels(workloads[target]))
    ]
    if not policies:
        return None
    allowed: set[str] = set()
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "namespaceSelector" in peer or "ipBlock" in peer:
                    allowed.add("*")  # beyond this namespace's workloads
                    continue
                allowed |= {n for n, w in workloads.items() if selects(peer["podSelector"], pod_labels(w))}
    return allowed


def test_only_the_services_and_the_jobs_reach_chroma() -> None:
    assert admitted(manifests(), "chroma") == {"query", "ingest", "trainer", "backfill"}


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    target = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_policy_opened_to_other_namespaces_is_visible(k8s_copy: Path) -> None:
    edit(
        k8s_copy / "network-policy.yaml",
        "        - podSelector:",
        "        - namespaceSelector: {}\n        - podSelector:",
    )
    assert "*" in (admitted(manifests(k8s_copy), "chroma") or set())


def test_without_the_policy_every_pod_may_reach_chroma(k8s_copy: Path) -> None:
    (k8s_copy / "network-policy.yaml").unlink()
    edit(k8s_copy / "kustomization.yaml", "  - network-policy.yaml\n", "")
    assert admitted(manifests(k8s_copy), "chroma") is None


def test_a_policy_that_selects_nothing_or_a_wrong_port_fails(k8s_copy: Path) -> None:
    edit(k8s_copy / "network-policy.yaml", "values: [query, ingest, trainer, backfill]", "values: [qeury]")
    edit(k8s_copy / "network-policy.yaml", "port: 8000", "port: 8080")
    _, errors = validate(k8s_copy)
    assert any("`from` podSelector matches no workload" in e for e in errors), errors
    assert any("port 8080 is not a container port" in e for e in errors), errors


def test_a_probe_without_a_timeout_fails(k8s_copy: Path) -> None:
    edit(
        k8s_copy / "query.yaml",
        "            timeoutSeconds: 2\n            failureThreshold: 3\n",
        "            failureThreshold: 3\n",
    )
    _, errors = validate(k8s_copy)
    assert errors == ["Deployment/query: livenessProbe has no explicit timeoutSeconds"]
