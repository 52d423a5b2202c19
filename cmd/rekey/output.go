package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/rekeyd/rekey/store"
)

// printJSON writes v as indented JSON, the same shape the API answers.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// when formats a time for people: local-independent, minutes, UTC.
func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// printImportState prints an import's state after a command acted on it: its JSON
// with --json, else one line with the reason.
func printImportState(env *Env, imp store.Import, asJSON bool) error {
	if asJSON {
		return printJSON(env.Stdout, imp)
	}
	fmt.Fprintf(env.Stdout, "Import %s (%s): %s", imp.ID, imp.Name, imp.State)
	if imp.Reason != "" {
		fmt.Fprintf(env.Stdout, " (%s)", imp.Reason)
	}
	fmt.Fprintln(env.Stdout)
	return nil
}
