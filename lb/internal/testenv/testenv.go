// Package testenv holds what only the balancer's test packages share:
// pebble, the ACME test server. A throwaway CA, waiting on a condition and
// free ports are in hits/testkit, shared with the app and e2e.
package testenv
