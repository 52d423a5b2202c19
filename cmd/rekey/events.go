package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/rekeyd/rekey/store"
)

func runEvents(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("events", env.Stderr)
	sock := socketFlag(fs)
	asJSON := fs.Bool("json", false, "print the raw newline-delimited JSON")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("events takes no arguments")
	}
	c, err := newClient(env, *sock)
	if err != nil {
		return err
	}
	defer c.Close()
	stream, err := c.Events(ctx)
	if err != nil {
		return err
	}
	defer stream.Close()
	for {
		e, err := stream.Next()
		switch {
		case ctx.Err() != nil:
			return nil // the user stopped following
		case errors.Is(err, io.EOF):
			return errors.New("the agent closed the event stream")
		case err != nil:
			return fmt.Errorf("follow events: %w", err)
		}
		if *asJSON {
			fmt.Fprintf(env.Stdout, "%s\n", stream.Line())
			continue
		}
		fmt.Fprintln(env.Stdout, formatEvent(e))
	}
}

// formatEvent is one event as one line for people.
func formatEvent(e store.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-20s %s", e.Time.UTC().Format("2006-01-02 15:04:05"), e.Kind, e.Message)
	for _, kv := range [][2]string{{"tenant", e.TenantID}, {"import", e.ImportID}, {"credential", e.CredentialID}, {"rotation", e.RotationID}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(e.Fields)) {
		fmt.Fprintf(&b, " %s=%s", k, e.Fields[k])
	}
	return b.String()
}
