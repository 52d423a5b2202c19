package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

// tenantCall is what a command about one tenant (rollback, sync) needs: the
// client, the tenant id, the argument as typed, and --json.
type tenantCall struct {
	client *api.Client
	id     string
	arg    string
	json   bool
}

// openTenantCall parses `NAME [--socket S] [--json] TENANT`, connects, and
// resolves TENANT (id or name). The caller closes the client.
func openTenantCall(ctx context.Context, env *Env, name, jsonHelp string, args []string) (*tenantCall, error) {
	fs := newFlagSet(name, env.Stderr)
	sock := socketFlag(fs)
	asJSON := fs.Bool("json", false, jsonHelp)
	if err := parseInterspersed(fs, args); err != nil {
		return nil, err
	}
	arg, err := oneArg(fs, "tenant (id or name)")
	if err != nil {
		return nil, err
	}
	c, err := newClient(env, *sock)
	if err != nil {
		return nil, err
	}
	id, err := resolveTenant(ctx, c, arg)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &tenantCall{client: c, id: id, arg: arg, json: *asJSON}, nil
}

// resolveTenant accepts a tenant id or name (case-insensitive).
func resolveTenant(ctx context.Context, c *api.Client, arg string) (string, error) {
	tenants, err := c.Tenants(ctx)
	if err != nil {
		return "", err
	}
	var byName []string
	for _, t := range tenants {
		if t.ID == arg {
			return t.ID, nil
		}
		if strings.EqualFold(t.Name, arg) {
			byName = append(byName, t.ID)
		}
	}
	switch len(byName) {
	case 1:
		return byName[0], nil
	case 0:
		return "", fmt.Errorf("no tenant with id or name %q; 'rekey status' lists them", arg)
	}
	return "", fmt.Errorf("%d tenants are named %q; pass the tenant id instead (%s)", len(byName), arg, strings.Join(byName, ", "))
}

// minImportPrefix is the shortest import id prefix the CLI accepts; the ids
// 'rekey seal' writes by default are 64 hex digits (a SHA-256).
const minImportPrefix = 6

// resolveImport accepts an import id or a unique prefix of one, like git
// accepts a short commit hash.
func resolveImport(ctx context.Context, c *api.Client, arg string) (string, error) {
	_, err := c.Import(ctx, arg)
	if err == nil || !errors.Is(err, store.ErrNotFound) || len(arg) < minImportPrefix {
		return arg, nil // the request that follows reports any error
	}
	imps, err := c.Imports(ctx)
	if err != nil {
		return "", err
	}
	var matches []string
	for _, imp := range imps {
		if strings.HasPrefix(imp.ID, arg) {
			matches = append(matches, imp.ID)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return arg, nil
	}
	return "", fmt.Errorf("%d imports start with %q; give more of the id", len(matches), arg)
}
