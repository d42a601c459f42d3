"""The offline validation of deploy/k8s (`make k8s-check`, which CI runs) catches what it claims to."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy.k8s.validate import K8S_DIR, validate


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    target = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_a_misspelt_field_fails_the_schema(k8s_copy: Path) -> None:
    edit(k8s_copy / "query.yaml", "readinessProbe:", "readynessProbe:")
    _, errors = validate(k8s_copy)
    assert any("query.yaml: Deployment/query" in e and "readynessProbe" in e for e in errors), errors


def test_a_wrong_type_fails_the_schema(k8s_copy: Path) -> None:
    edit(k8s_copy / "query.yaml", "minReplicas: 2", "minReplicas: two")
    _, errors = validate(k8s_copy)
    assert any("HorizontalPodAutoscaler/query" in e for e in errors), errors


def test_dangling_references_are_caught(k8s_copy: Path) -> None:
    edit(k8s_copy / "query.yaml", "claimName: weights", "claimName: wieghts")
    edit(k8s_copy / "ingest.yaml", "targetPort: http", "targetPort: web")
    edit(k8s_copy / "query.yaml", "name: query-settings\n  labels", "name: query-config\n  labels")
    _, errors = validate(k8s_copy)
    assert any("PersistentVolumeClaim 'wieghts'" in e for e in errors), errors
    assert any("Service/ingest: targetPort 'web'" in e for e in errors), errors
    assert any("ConfigMap 'query-settings'" in e for e in errors), errors


def test_every_manifest_must_be_listed(k8s_copy: Path) -> None:
    (k8s_copy / "extra.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n")
    _, errors = validate(k8s_copy)
    assert errors == ["extra.yaml: in the folder but not in kustomization.yaml"]


def test_an_indexed_job_runs_one_shard_per_index_and_every_shard(k8s_copy: Path) -> None:
    edit(k8s_copy / "backfill-job.yaml", "completions: 8", "completions: 6")
    edit(k8s_copy / "backfill-job.yaml", '"--shard", "$(JOB_COMPLETION_INDEX)"', '"--shard", "0"')
    _, errors = validate(k8s_copy)
    assert errors == [
        "Job/backfill: container backfill does not pass --shard $(JOB_COMPLETION_INDEX)",
        "Job/backfill: --shards 8 but completions 6",
    ]
