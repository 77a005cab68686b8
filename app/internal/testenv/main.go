package testenv

import (
	"fmt"
	"os"
	"testing"
)

// Main is the body of a test package's TestMain: it starts the servers the
// package asks for (a nil pointer means not wanted) once, runs the tests and
// stops the servers, returning the exit code:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &pg, nil)) }
func Main(m *testing.M, pg **Postgres, rds **Redis) int {
	if pg != nil {
		p, err := StartPostgres(PostgresOptions{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
			return 1
		}
		defer p.Close()
		*pg = p
	}
	if rds != nil {
		r, err := StartRedis()
		if err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
			return 1
		}
		defer r.Close()
		*rds = r
	}
	return m.Run()
}
