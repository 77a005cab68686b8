// Command hitbench is the app's benchmark (make bench-app). It starts its
// own durable PostgreSQL and Redis on free loopback ports, then for each
// stored-history size runs the app binary under load beside the original
// Flask app's storage pattern (INSERT a row, COUNT the last day) served by a
// tiny handler on the same PostgreSQL, and prints a Markdown table.
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hitbench:", err)
		os.Exit(1)
	}
}
