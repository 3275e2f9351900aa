#!/usr/bin/env bash
# Builds kustomize and kubeconform, pinned with their hashes in deploy/k8s/tools/go.mod and
# go.sum, into .state/k8s-tools, or into the folder given as the first argument:
# tests/integration/test_k8s_manifests.py builds every overlay of deploy/k8s/ with kustomize and
# validates the result with kubeconform against the schemas kept in deploy/k8s/schemas/. Needs
# Go 1.24 or newer (the machine's toolchain; kustomize v5.8 asks for it); the modules come from
# the Go module proxy. Idempotent.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target="${1:-$root/.state/k8s-tools}"
command -v go >/dev/null || {
  echo "go is missing: install Go 1.24 or newer to build kustomize and kubeconform" >&2
  exit 1
}

mkdir -p "$target"
# -mod=readonly: exactly the versions and hashes of go.mod and go.sum, never an update;
# -buildvcs=false: nothing to stamp from git (a worktree or an export builds the same).
(cd "$root/deploy/k8s/tools" \
  && GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$target/" \
    sigs.k8s.io/kustomize/kustomize/v5 github.com/yannh/kubeconform/cmd/kubeconform)
touch "$target/.installed"
