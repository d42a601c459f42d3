#!/usr/bin/env bash
# `make up`: build the images and start chroma, ingest (8001) and query (8000) in the background.
# Creates .env (with a fresh ingest API key) first when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/ensure-env.sh
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
"${compose[@]}" up -d --build "$@"
"${compose[@]}" ps
echo "query API:  http://localhost:8000/docs   ingestion API: http://localhost:8001/docs"
echo "the ingestion API key is INGEST_API_KEY in .env; train with: ${compose[*]} --profile train run --rm trainer"
