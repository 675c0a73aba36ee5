// Package deploy holds walhook's deployment files: the Dockerfile, the Kubernetes manifests
// (k8s/, a kustomize base with dev and prod overlays) and a Compose file (compose/). It has no
// code; its tests render every overlay in process and decode every object strictly into its
// Kubernetes type, so a misspelt field, a config the binary would reject or a topic list out of
// step with the code fails `make test`.
package deploy
