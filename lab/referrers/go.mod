// Builds the lab's registry with the OCI 1.1 referrers API (go-containerregistry's, at the release cosign uses).
module imageclone.lab/referrers

go 1.26.0

require github.com/google/go-containerregistry v0.20.7
