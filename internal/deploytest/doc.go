// Package deploytest checks the deployment files without a Docker engine or
// a Kubernetes cluster: docker-compose.yml is loaded and validated with the
// compose-spec loader, the Dockerfile is parsed line by line, and the Helm
// chart in deploy/helm/interlock is linted (`helm lint --strict`, with Helm
// as a Go library) and rendered for several value sets, each manifest
// decoded strictly into the Kubernetes API types (or local types of the
// KEDA and Prometheus Operator resources), so a misspelt field fails. The
// tests assert what a user relies on: services, health checks, listeners, a
// static non-root image, probes on /healthz and /readyz, Secrets referenced
// and never embedded, replicas bounded by the partitions, the topics hook;
// and docs/deployment.md is kept in step with the chart.
// It holds tests only.
package deploytest
