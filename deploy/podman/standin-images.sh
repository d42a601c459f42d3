#!/usr/bin/env bash
# TEST FIXTURES, never pushed: local stand-ins for the two public base images that `make
# compose-test` cannot pull (this machine reaches no container registry). Operators use the
# official images; only the compose test builds these.
#   docker.io/library/python:3.11-slim  Debian bookworm (debootstrap) with its python3.11, venv,
#                                        pip wheel, useradd and bash, so `FROM python:3.11-slim` in
#                                        deploy/*/Dockerfile resolves locally, unchanged.
#   docker.io/chromadb/chroma:<pinned>  the pinned chromadb package's own server on that base,
#                                        serving like the official image: port 8000, data in /data,
#                                        /api/v2/heartbeat, bash for the compose health check.
# The debootstrap root file system is cached as a tarball under .cache/compose-test/ (gitignored;
# delete it to start cold). Needs root, podman, debootstrap.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=.cache/compose-test
mkdir -p "$cache"
python_tag=docker.io/library/python:3.11-slim
chroma_version=$(sed -n 's/^chromadb==\([^ ]*\).*/\1/p' requirements/chroma.lock)
chroma_tag=docker.io/chromadb/chroma:$chroma_version
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

rootfs_tar=$cache/bookworm-python3.11.tar
if [ ! -s "$rootfs_tar" ]; then
  echo "stand-in: debootstrap bookworm (minbase + python3.11) ..."
  root=$(mktemp -d /var/tmp/standin-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  # python-is-python3: `python` as in the official image; python3-distutils provides the
  # python3.11-distutils that python3.11-venv needs (debootstrap does not resolve virtual packages).
  # passwd (useradd) and bash are in minbase.
  debootstrap --variant=minbase \
    --include=python3.11,python3.11-venv,python3-distutils,python-is-python3,ca-certificates,netbase \
    bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log"; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  tar -C "$root" --numeric-owner -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$root"
  trap - EXIT
fi

if ! podman image exists "$python_tag"; then
  podman import "$rootfs_tar" localhost/compose-test/bookworm-python3.11 >/dev/null
  # The host's CA bundle: builds reach PyPI through this machine's egress, whose TLS certificates
  # chain to the CAs the host trusts (Debian's pip in the venvs reads this system bundle).
  context=$(mktemp -d)
  cp /etc/ssl/certs/ca-certificates.crt "$context/"
  podman build -q -t "$python_tag" -f - "$context" >/dev/null <<'CONTAINERFILE'
FROM localhost/compose-test/bookworm-python3.11
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
LABEL org.opencontainers.image.description="TEST FIXTURE: stand-in for python:3.11-slim (Debian bookworm python3.11), never pushed"
CMD ["python3"]
CONTAINERFILE
  rm -rf "$context"
  echo "stand-in: $python_tag built from debootstrap bookworm"
fi

podman build -q -f deploy/podman/chroma.Containerfile -t "$chroma_tag" . >/dev/null
echo "stand-in: $chroma_tag built"
