// Package e2e tests the whole system the way a user runs it: docker compose
// with the repository's compose file and Dockerfiles, a real engine, real
// PostgreSQL and Redis containers, and a real headless browser.
//
// The tests carry the build tag e2e so `go test ./...` elsewhere never starts
// containers by accident; run them with `make e2e` (scripts/e2e).
package e2e
