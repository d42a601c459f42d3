#!/usr/bin/env bash
# `make compose-test`: install Debian's podman and docker-compose (and what the stand-in images and
# podman need here) if missing, then run the compose test (deploy/podman/compose_test.py). Runs as
# root: rootful podman; apt-get through sudo otherwise, but podman itself must then be root too.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
  echo "compose-test: run as root (rootful podman: sudo make compose-test)" >&2
  exit 2
fi
# runc: this sandbox's hybrid cgroups defeat crun; netavark + aardvark-dns: service names resolve;
# iptables: netavark sets up container networks with it (without it: "netavark: No such file or
# directory" at the first build step that runs a container).
packages=(podman docker-compose debootstrap runc netavark aardvark-dns iptables)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "compose-test: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
exec "${PY:-.venv/bin/python}" -m deploy.podman.compose_test "$@"
