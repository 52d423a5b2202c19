package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/rekeyd/rekey/store"
)

func runRollback(ctx context.Context, env *Env, args []string) error {
	tc, err := openTenantCall(ctx, env, "rollback", "print the API's JSON", args)
	if err != nil {
		return err
	}
	defer tc.client.Close()
	c, id, arg := tc.client, tc.id, tc.arg
	t, err := c.Rollback(ctx, id)
	if errors.Is(err, store.ErrState) {
		return fmt.Errorf("roll back tenant %s: %w (a tenant can go back only while it keeps a previous credential, until the new one is confirmed)", arg, err)
	}
	if err != nil {
		return fmt.Errorf("roll back tenant %s: %w", arg, err)
	}
	if tc.json {
		return printJSON(env.Stdout, t)
	}
	fmt.Fprintf(env.Stdout, "Rolled back %s (%s).\n", t.Name, t.ID)
	printSummary(env.Stdout, "active", t.Active)
	printSummary(env.Stdout, "previous", t.Previous)
	return nil
}
