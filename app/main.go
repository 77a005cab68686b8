// Command app is the hits page counter: every GET / counts one hit, durably
// in PostgreSQL, and shows this hit's numbers. See docs/app.md.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/joho/godotenv"
)

// version is the build's version, shown on the page and in X-App-Version.
// The build sets it: go build -ldflags "-X main.version=v1.2.3"
// (Dockerfile.app from APP_VERSION, the Makefile from git describe).
var version = "dev"

func main() {
	_ = godotenv.Load() // a missing .env is fine; the environment wins over it
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}
