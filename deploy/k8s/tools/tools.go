//go:build tools

// Package tools pins the two programs that validate deploy/k8s/ (kustomize and kubeconform):
// go.mod and go.sum hold their versions and hashes; deploy/local/install-k8s-tools.sh builds
// them into .state/k8s-tools.
package tools

import (
	_ "github.com/yannh/kubeconform/cmd/kubeconform"
	_ "sigs.k8s.io/kustomize/kustomize/v5"
)
