//go:build tools

// Package tools pins the cosign command the lab builds.
package tools

import _ "github.com/sigstore/cosign/v2/cmd/cosign"
