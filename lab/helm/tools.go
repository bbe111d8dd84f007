//go:build tools

// Package helm pins the Helm release the lab builds its helm binary from: `go build helm.sh/helm/v3/cmd/helm`
// in this module (see lab/helm.py). The import keeps the pin and go.sum in `go mod tidy`.
package helm

import _ "helm.sh/helm/v3/cmd/helm"
