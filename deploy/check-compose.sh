#!/usr/bin/env bash
# `make compose-check`: validate docker-compose.yml without a Docker engine.
#   1. `config -q` passes, with every profile (trainer included) and a stand-in ingest API key;
#   2. without INGEST_API_KEY it must FAIL: the key has no default, on purpose.
# Uses `docker compose` when the plugin exists, else Debian's `docker-compose` (CI installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
else
  echo "need docker-compose (apt-get install docker-compose) or the docker compose plugin" >&2
  exit 2
fi
# An empty env file stands in for a developer's .env, so the result depends on the repository only.
empty=$(mktemp)
trap 'rm -f "$empty"' EXIT

INGEST_API_KEY=compose-check "${compose[@]}" --env-file "$empty" --profile train config -q
echo "compose: config -q ok (${compose[*]}, profile train included)"

if env -u INGEST_API_KEY "${compose[@]}" --env-file "$empty" config -q 2>/dev/null; then
  echo "compose: config passed without INGEST_API_KEY; the key must have no default" >&2
  exit 1
fi
echo "compose: refuses to start without INGEST_API_KEY, as it should"
