package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/rekeyd/rekey/store"
)

func runImports(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("imports", env.Stderr)
	sock := socketFlag(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError("imports takes at most one import id")
	}
	c, err := newClient(env, *sock)
	if err != nil {
		return err
	}
	defer c.Close()
	if fs.NArg() == 1 {
		id, err := resolveImport(ctx, c, fs.Arg(0))
		if err != nil {
			return err
		}
		imp, err := c.Import(ctx, id)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env.Stdout, imp)
		}
		printImport(env.Stdout, imp)
		return nil
	}
	imps, err := c.Imports(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, map[string]any{"imports": imps})
	}
	if len(imps) == 0 {
		fmt.Fprintln(env.Stdout, "No imports yet.")
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tINTENT\tTARGET\tUPDATED\tREASON")
	for _, imp := range imps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", imp.ID, imp.Name, imp.State, imp.Intent, dash(imp.Target), when(imp.UpdatedAt), imp.Reason)
	}
	return tw.Flush()
}

func printImport(w io.Writer, imp store.Import) {
	fmt.Fprintf(w, "Import     %s\n", imp.ID)
	fmt.Fprintf(w, "Name       %s\n", imp.Name)
	fmt.Fprintf(w, "State      %s\n", imp.State)
	if imp.Reason != "" {
		fmt.Fprintf(w, "Reason     %s\n", imp.Reason)
	}
	fmt.Fprintf(w, "Intent     %s\n", imp.Intent)
	if imp.Target != "" {
		fmt.Fprintf(w, "Target     %s\n", imp.Target)
	}
	if imp.ClientID != "" {
		fmt.Fprintf(w, "Client ID  %s\nKey ID     %s\n", imp.ClientID, imp.KeyID)
	}
	fmt.Fprintf(w, "Source     %s\n", imp.Source)
	fmt.Fprintf(w, "Attempts   %d\nUpdated    %s\n", imp.Attempts, when(imp.UpdatedAt))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
