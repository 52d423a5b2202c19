package main

import (
	"flag"
	"fmt"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/platform"
)

// socketFlag adds --socket to fs.
func socketFlag(fs *flag.FlagSet) *string {
	return fs.String("socket", "", "the agent's socket (default: $REKEY_SOCKET, else the platform default)")
}

// resolveSocket picks the socket: the flag, then REKEY_SOCKET, then the
// platform default.
func resolveSocket(env *Env, flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v := env.Getenv("REKEY_SOCKET"); v != "" {
		return v, nil
	}
	p, err := platform.DefaultPaths()
	if err != nil {
		return "", fmt.Errorf("find the default socket (pass --socket): %w", err)
	}
	return p.Socket, nil
}

// newClient is the shared client setup of every command that talks to the agent.
func newClient(env *Env, flagValue string) (*api.Client, error) {
	sock, err := resolveSocket(env, flagValue)
	if err != nil {
		return nil, err
	}
	return api.NewClient(sock), nil
}
