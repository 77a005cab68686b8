// Package testkit is what the tests and benchmarks of app, lb and e2e
// share: waiting on a condition with a deadline, free loopback ports and
// the median of a sample. Its procstat package reads CPU time from /proc.
//
// It is a module of its own, joined to the others by the repository's
// go.work, so no program's image depends on it.
package testkit
