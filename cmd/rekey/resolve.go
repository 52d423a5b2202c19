package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rekeyd/rekey/agent"
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
	arg, err := oneArg(fs, "tenant (id, name, or its credential's Key ID or Client ID)")
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

// resolveTenant accepts a tenant id or name (case-insensitive), or one of
// its active credential's id, name, Key ID or Client ID, matched the way
// 'unlock --update' and a payload's TargetCredential are (agent.MatchTarget).
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
		cred, err := resolveCredential(ctx, c, arg, true)
		if err != nil {
			return "", fmt.Errorf("no tenant with id or name %q, and %w", arg, err)
		}
		return cred.TenantID, nil
	}
	return "", fmt.Errorf("%d tenants are named %q; pass the tenant id instead (%s)", len(byName), arg, strings.Join(byName, ", "))
}

// resolveCredential accepts a credential's id, name, Key ID or Client ID
// (agent.MatchTarget's rules). An active credential wins over others of the
// same name; activeOnly looks at active ones alone.
func resolveCredential(ctx context.Context, c *api.Client, arg string, activeOnly bool) (store.Credential, error) {
	creds, err := c.Credentials(ctx)
	if err != nil {
		return store.Credential{}, err
	}
	var active []store.Credential
	for _, cr := range creds {
		if cr.State == store.CredActive {
			active = append(active, cr)
		}
	}
	matches := agent.MatchTarget(arg, active)
	if len(matches) == 0 && !activeOnly {
		matches = agent.MatchTarget(arg, creds)
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return store.Credential{}, fmt.Errorf("no credential has the id, name, Key ID or Client ID %q; 'rekey credentials' lists them", arg)
	}
	ids := make([]string, len(matches))
	for i, m := range matches {
		ids[i] = m.ID
	}
	return store.Credential{}, fmt.Errorf("%d credentials match %q; pass the credential id or Key ID instead (%s)", len(matches), arg, strings.Join(ids, ", "))
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
