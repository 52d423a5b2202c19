package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/rekeyd/rekey/store"
)

func init() {
	register(command{name: "rollback", summary: "swap a tenant back to its previous credential: rollback TENANT", run: runRollback})
}

func runRollback(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("rollback", env.Stderr)
	sock := socketFlag(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	arg, err := oneArg(fs, "tenant (id or name)")
	if err != nil {
		return err
	}
	c, err := newClient(env, *sock)
	if err != nil {
		return err
	}
	defer c.Close()
	id, err := resolveTenant(ctx, c, arg)
	if err != nil {
		return err
	}
	t, err := c.Rollback(ctx, id)
	if errors.Is(err, store.ErrState) {
		return fmt.Errorf("roll back tenant %s: %w (a tenant can go back only while it keeps a previous credential, until the new one is confirmed)", arg, err)
	}
	if err != nil {
		return fmt.Errorf("roll back tenant %s: %w", arg, err)
	}
	if *asJSON {
		return printJSON(env.Stdout, t)
	}
	fmt.Fprintf(env.Stdout, "Rolled back %s (%s).\n", t.Name, t.ID)
	printSummary(env.Stdout, "active", t.Active)
	printSummary(env.Stdout, "previous", t.Previous)
	return nil
}
