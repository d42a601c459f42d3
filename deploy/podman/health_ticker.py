"""Run the health checks of a compose project's containers on their own schedule, as dockerd does.

podman runs a container's HEALTHCHECK from a systemd timer; without systemd (this sandbox, CI) no
check ever runs and a container stays "starting", so `depends_on: condition: service_healthy` would
wait forever. This loop calls `podman healthcheck run <container>` every `interval` of each running
container of the project (the first check one interval after start, as dockerd). Stdlib only; used by
deploy/podman/compose-test.sh, stopped by it on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import time


def containers(project: str) -> dict[str, float]:
    """Running containers of the project that have a health check: id -> interval in seconds."""
    ids = subprocess.run(
        ["podman", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    if not ids:
        return {}
    found = subprocess.run(["podman", "inspect", *ids], capture_output=True, text=True, timeout=30)
    result: dict[str, float] = {}
    for info in json.loads(found.stdout or "[]"):
        check = info.get("Config", {}).get("Healthcheck") or {}
        if check.get("Test") and check["Test"] != ["NONE"]:
            result[info["Id"]] = (check.get("Interval") or 30_000_000_000) / 1e9
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, help="compose project name")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between looks for containers")
    args = parser.parse_args()
    due: dict[str, float] = {}
    while True:
        now = time.monotonic()
        try:
            running = containers(args.project)
        except (subprocess.TimeoutExpired, ValueError):
            # podman waits on its storage lock while a build commits a large layer: try again.
            time.sleep(args.poll)
            continue
        for cid, interval in running.items():
            if cid not in due:
                due[cid] = now + interval
            elif now >= due[cid]:
                # Exit status 1 = unhealthy, which podman records; only the schedule matters here.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    subprocess.run(["podman", "healthcheck", "run", cid], capture_output=True, timeout=120)
                due[cid] = time.monotonic() + interval
        for cid in set(due) - set(running):
            del due[cid]
        time.sleep(args.poll)


if __name__ == "__main__":
    main()
