//go:build tools

// Pins the modules of the lab's tools built from upstream packages (toxiproxy's server).
package tools

import (
	_ "github.com/Shopify/toxiproxy/v2/cmd/server"
)
