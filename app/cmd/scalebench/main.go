// Command scalebench measures the whole system as users run it: lb in
// front of N app replicas, one PostgreSQL (fsync on) and one Redis, all
// started by the benchmark on free loopback ports (or by docker compose),
// loaded through lb with keep-alive JSON GET / requests. For each mode and
// each N it runs a warm-up and a measured run, in interleaved rounds; after
// every run it checks that PostgreSQL holds exactly the hits answered 200.
// It prints a Markdown table of medians with the CPU each part spent per
// answered hit, and draws hits/s against replicas (with the ideal line N ×
// one replica's figure) as an SVG chart.
//
//	scalebench -app bin/app -lb bin/lb -modes native,budget,compose -n 1,2,4,8
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "scalebench:", err)
		os.Exit(1)
	}
}
