package main

import (
	"context"
	"fmt"
	"text/tabwriter"
)

func runCredentials(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("credentials", env.Stderr)
	sock := socketFlag(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("credentials takes no arguments")
	}
	c, err := newClient(env, *sock)
	if err != nil {
		return err
	}
	defer c.Close()
	creds, err := c.Credentials(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, map[string]any{"credentials": creds})
	}
	if len(creds) == 0 {
		fmt.Fprintln(env.Stdout, "No credentials yet.")
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tCLIENT ID\tKEY ID\tTENANT\tORIGIN\tACTIVATED\tLAST AUTH")
	for _, cr := range creds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cr.Name, cr.State, cr.ClientID, cr.KeyID, cr.TenantID, cr.Origin, when(cr.ActivatedAt), when(cr.LastAuthAt))
	}
	return tw.Flush()
}
