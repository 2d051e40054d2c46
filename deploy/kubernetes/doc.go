// Package kubernetes holds switchyard's Kubernetes manifests (base/, the
// datastores/ for a single-node trial, overlays/) and, in its test, their
// check: no cluster runs here, so every manifest is decoded strictly into
// the Kubernetes API types (k8s.io/api), the overlays are rendered the way
// kustomize would (namespace, images, JSON 6902 patches), and the
// cross-references are checked: selectors, ports, probes, ConfigMap and
// Secret keys, autoscaler and disruption-budget targets, the gateway
// configs with the gateway's own loader, Hitch's services against the
// table hitch up runs (hitch/svc), and the endpoints the probes hit by
// starting the real components. See docs/kubernetes.md.
package kubernetes
