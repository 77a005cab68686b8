// Package testenv holds what only the balancer's test packages share: a
// throwaway CA and pebble, the ACME test server. Waiting on a condition and
// free ports are in hits/testkit, shared with the app and e2e.
package testenv
