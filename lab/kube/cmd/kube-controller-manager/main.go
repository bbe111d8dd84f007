// Command kube-controller-manager is the upstream controller manager, so the lab's
// Deployments own ReplicaSets, namespaces finalize and service accounts exist.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
