// Command app is the hits page counter: every GET / counts one hit, durably
// in PostgreSQL, and shows this hit's numbers. See docs/app.md.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/joho/godotenv"
)

func main() {
	_ = godotenv.Load() // a missing .env is fine; the environment wins over it
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}
