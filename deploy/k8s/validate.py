"""Validate deploy/k8s offline: `make k8s-check` (python -m deploy.k8s.validate).

1. Every manifest against the Kubernetes OpenAPI schemas bundled in `kubernetes-validate` (strict:
   an unknown or misspelt field is an error), for the Kubernetes version below; no cluster, no network.
2. The folder and kustomization.yaml agree: every manifest is listed, every listed file exists.
3. References resolve: each ConfigMap, PersistentVolumeClaim and Service a workload names is
   defined here (the ingest API key Secret excepted: operators create it, see the README); each
   Service and HorizontalPodAutoscaler finds its target; named probe and service ports exist; each
   NetworkPolicy selects pods of a workload here and admits pods that exist.
4. Every probe has an explicit timeoutSeconds (a probe must never wait on Kubernetes' default).
5. An Indexed Job's pods pass their JOB_COMPLETION_INDEX as `--shard` and its `completions` as
   `--shards` (twotower.index.bulk: one shard per index, every shard run).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

K8S_DIR = Path(__file__).resolve().parent
KUBERNETES_VERSION = "1.33.0"
# Created by the operator (`kubectl create secret ...`), never committed.
EXTERNAL_SECRETS = {"twotower-ingest"}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
PORT_KEYS = ("name", "containerPort")
PROBES = ("readinessProbe", "livenessProbe", "startupProbe")

log = logging.getLogger("k8s-validate")

Manifest = dict[str, Any]


def manifests(directory: Path = K8S_DIR) -> list[tuple[Path, Manifest]]:
    """Every document of every file kustomization.yaml lists, in order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[tuple[Path, Manifest]] = []
    for name in kustomization["resources"]:
        path = directory / name
        docs.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def listing_errors(directory: Path = K8S_DIR) -> list[str]:
    listed = set(yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    errors = [f"{name}: in the folder but not in kustomization.yaml" for name in sorted(present - listed)]
    errors += [f"{name}: in kustomization.yaml but missing" for name in sorted(listed - present)]
    return errors


def schema_errors(docs: list[tuple[Path, Manifest]], version: str = KUBERNETES_VERSION) -> list[str]:
    errors = []
    for path, doc in docs:
        where = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {'.'.join(str(p) for p in exc.path)}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{where}: {exc.message}")
    return errors


def pod_spec(doc: Manifest) -> Manifest:
    return dict(doc["spec"]["template"]["spec"])


def containers(doc: Manifest) -> Iterator[Manifest]:
    spec = pod_spec(doc)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def port_names(workloads: list[Manifest]) -> set[Any]:
    """The names and numbers of every container port of `workloads`' pods."""
    return {p.get(k) for w in workloads for c in containers(w) for p in c.get("ports", []) for k in PORT_KEYS}


def reference_errors(docs: list[tuple[Path, Manifest]]) -> list[str]:
    defined = {(doc["kind"], doc["metadata"]["name"]) for _, doc in docs}
    errors: list[str] = []

    def need(kind: str, name: str, where: str) -> None:
        if (kind, name) not in defined and not (kind == "Secret" and name in EXTERNAL_SECRETS):
            errors.append(f"{where}: refers to {kind} {name!r}, which no manifest defines")

    workloads = [doc for _, doc in docs if doc["kind"] in WORKLOADS]
    for doc in workloads:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        claims = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"] for v in pod_spec(doc).get("volumes", [])} | claims
        for volume in pod_spec(doc).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                need("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"], where)
            if "configMap" in volume:
                need("ConfigMap", volume["configMap"]["name"], where)
        if doc["kind"] == "StatefulSet":
            need("Service", doc["spec"]["serviceName"], where)
        for c in containers(doc):
            ports = {p.get(k) for p in c.get("ports", []) for k in PORT_KEYS}
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    need("ConfigMap", source["configMapRef"]["name"], where)
                if "secretRef" in source:
                    need("Secret", source["secretRef"]["name"], where)
            for var in c.get("env", []):
                ref = var.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    need("Secret", ref["secretKeyRef"]["name"], where)
                if "configMapKeyRef" in ref:
                    need("ConfigMap", ref["configMapKeyRef"]["name"], where)
            for mount in c.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    errors.append(f"{where}: mounts volume {mount['name']!r}, which the pod does not define")
            for probe in PROBES:
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None and port not in ports:
                    errors.append(f"{where}: {probe} port {port!r} is not a port of container {c['name']}")

    for _, doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Service":
            selector = doc["spec"].get("selector", {})
            targets = [w for w in workloads if selector.items() <= pod_labels(w).items()]
            if not targets:
                errors.append(f"{where}: selector {selector} matches no workload's pods")
            for port in doc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if targets and target not in port_names(targets):
                    errors.append(f"{where}: targetPort {target!r} is not a container port of its pods")
        if doc["kind"] == "HorizontalPodAutoscaler":
            ref = doc["spec"]["scaleTargetRef"]
            need(ref["kind"], ref["name"], where)
    return errors


def selects(selector: Manifest, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a pod's labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pod_labels(doc: Manifest) -> dict[str, str]:
    return dict(doc["spec"]["template"]["metadata"]["labels"])


def policy_errors(docs: list[tuple[Path, Manifest]]) -> list[str]:
    workloads = [doc for _, doc in docs if doc["kind"] in WORKLOADS]
    errors = []
    for _, doc in docs:
        if doc["kind"] != "NetworkPolicy":
            continue
        where = f"NetworkPolicy/{doc['metadata']['name']}"
        targets = [w for w in workloads if selects(doc["spec"]["podSelector"], pod_labels(w))]
        if not targets:
            errors.append(f"{where}: podSelector matches no workload's pods")
        ports = port_names(targets)
        for rule in doc["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                if targets and port.get("port") not in ports:
                    errors.append(f"{where}: port {port.get('port')!r} is not a container port of its pods")
            for peer in rule.get("from", []):
                selector = peer.get("podSelector")
                if selector is not None and not any(selects(selector, pod_labels(w)) for w in workloads):
                    errors.append(f"{where}: a `from` podSelector matches no workload's pods")
    return errors


def probe_errors(docs: list[tuple[Path, Manifest]]) -> list[str]:
    errors = []
    for _, doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        for c in containers(doc):
            for probe in PROBES:
                if probe in c and "timeoutSeconds" not in c[probe]:
                    errors.append(f"{where}: {probe} has no explicit timeoutSeconds")
    return errors


def indexed_job_errors(docs: list[tuple[Path, Manifest]]) -> list[str]:
    errors = []
    for _, doc in docs:
        if doc["kind"] != "Job" or doc["spec"].get("completionMode") != "Indexed":
            continue
        where = f"Job/{doc['metadata']['name']}"
        for c in containers(doc):
            argv = [str(a) for a in c.get("command", []) + c.get("args", [])]
            after = {
                flag: argv[argv.index(flag) + 1] for flag in ("--shard", "--shards") if flag in argv[:-1]
            }
            if after.get("--shard") != "$(JOB_COMPLETION_INDEX)":
                errors.append(f"{where}: container {c['name']} does not pass --shard $(JOB_COMPLETION_INDEX)")
            if after.get("--shards") != str(doc["spec"].get("completions")):
                errors.append(
                    f"{where}: --shards {after.get('--shards')} but completions {doc['spec'].get('completions')}"
                )
    return errors


def validate(directory: Path = K8S_DIR, version: str = KUBERNETES_VERSION) -> tuple[int, list[str]]:
    """(number of manifests checked, errors)."""
    docs = manifests(directory)
    errors = listing_errors(directory) + schema_errors(docs, version) + reference_errors(docs)
    return len(docs), errors + policy_errors(docs) + probe_errors(docs) + indexed_job_errors(docs)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=K8S_DIR)
    parser.add_argument("--kubernetes-version", default=KUBERNETES_VERSION)
    args = parser.parse_args(argv)
    version = args.kubernetes_version
    count, errors = validate(args.dir, version)
    for error in errors:
        log.error("%s", error)
    if errors:
        log.error("k8s: %d problem(s) in %d manifests under %s", len(errors), count, args.dir)
        return 1
    log.info("k8s: %d manifests valid against Kubernetes %s schemas, references resolve", count, version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
