#!/usr/bin/env bash
# `make down`: stop and remove the containers. Volumes (Chroma data, weights) are kept; add -v to
# drop them too (./deploy/compose-down.sh -v).
set -euo pipefail
cd "$(dirname "$0")/.."
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
"${compose[@]}" --profile train down "$@"
