"""The image-clone local lab: a real Kubernetes control plane and two registries on loopback."""
