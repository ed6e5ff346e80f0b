// Package deploytest checks the deployment files at the repository root,
// docker-compose.yml and the Dockerfile, without a Docker engine: the compose
// file is loaded and validated with the compose-spec loader, the Dockerfile is
// parsed line by line, and the tests assert what a user relies on (services,
// health checks, listeners, a static non-root image). It holds tests only.
package deploytest
