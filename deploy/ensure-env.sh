#!/usr/bin/env bash
# Create .env from .env.example, with a fresh random INGEST_API_KEY, unless .env already exists.
# Used by `make up` (deploy/compose-up.sh) and `make run` (deploy/local/stack.py).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .env ] && exit 0
key=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
umask 077
sed "s/^INGEST_API_KEY=.*/INGEST_API_KEY=$key/" .env.example > .env
echo "created .env with a fresh INGEST_API_KEY (keep it secret; clients send it as X-API-Key)"
