// A registry that serves the OCI 1.1 referrers API (GET /v2/<name>/referrers/<digest>), in memory, over TLS
// on loopback: go-containerregistry's registry with referrers support, which `crane registry serve` leaves off.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	address := flag.String("address", "127.0.0.1:0", "host:port to listen on")
	cert := flag.String("cert", "", "TLS certificate (PEM)")
	key := flag.String("key", "", "TLS private key (PEM)")
	flag.Parse()
	server := &http.Server{
		Addr:              *address,
		Handler:           registry.New(registry.WithReferrersSupport(true)),
		ReadHeaderTimeout: 5 * time.Second,
	}
	log.Printf("serving on %s", *address)
	log.Fatal(server.ListenAndServeTLS(*cert, *key))
}
