package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func runVersion(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("version", env.Stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("version takes no arguments")
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(map[string]string{
			"version": version, "go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH,
		})
	}
	fmt.Fprintf(env.Stdout, "rekey %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
