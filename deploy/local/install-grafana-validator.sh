#!/usr/bin/env bash
# Builds deploy/grafana/validate (Grafana's dashboard schema, from the Grafana Foundation SDK
# pinned with its hash in deploy/grafana/validate/go.sum) into .state/grafana-validator, or into
# the folder given as the first argument: tests/integration/test_grafana_tooling.py checks every
# dashboard with it. Needs Go 1.21 or newer (the machine's toolchain; Debian 12's golang-go is
# too old); the module comes from the Go module proxy. Idempotent.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target="${1:-$root/.state/grafana-validator}"
command -v go >/dev/null || {
  echo "go is missing: install Go 1.21 or newer to build the Grafana dashboard validator" >&2
  exit 1
}

mkdir -p "$target"
# -mod=readonly: exactly the versions and hashes of go.mod and go.sum, never an update;
# -buildvcs=false: nothing to stamp from git (a worktree or an export builds the same).
(cd "$root/deploy/grafana/validate" \
  && GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$target/validate-dashboards" .)
touch "$target/.installed"
