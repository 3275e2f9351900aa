#!/usr/bin/env bash
# Installs the AsyncAPI project's parser (@asyncapi/parser, pinned with integrity hashes in
# deploy/asyncapi/package-lock.json) under .state/asyncapi: the tests validate the event contract
# (docs/asyncapi.json and each service's view) with it, through deploy/asyncapi/validate.cjs.
# Needs Node.js and npm (deploy/local/install-system-packages.sh installs them). Idempotent.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target="$root/.state/asyncapi"
for tool in node npm; do
  command -v "$tool" >/dev/null || {
    echo "$tool is missing: run deploy/local/install-system-packages.sh" >&2
    exit 1
  }
done

mkdir -p "$target"
cp "$root/deploy/asyncapi/package.json" "$root/deploy/asyncapi/package-lock.json" "$target/"
# Exactly the locked versions, checked against their hashes; no install scripts run (one
# dependency's would report the download to its vendor).
(cd "$target" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
touch "$target/.installed"
