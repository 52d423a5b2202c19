package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

// errRejected: a checked credential was rejected; check exits 1. Its
// outcome is in the output already, JSON or table.
var errRejected = fmt.Errorf("rejected by the token endpoint%w", errInOutput)

func runCheck(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("check", env.Stderr)
	sock := socketFlag(fs)
	asJSON := fs.Bool("json", false, `print {"checks": [...]} as JSON`)
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError("expected at most one credential, got %d arguments", fs.NArg())
	}
	c, err := newClient(env, *sock)
	if err != nil {
		return err
	}
	defer c.Close()
	var targets []store.Credential
	if fs.NArg() == 1 {
		cred, err := checkTarget(ctx, c, fs.Arg(0))
		if err != nil {
			return err
		}
		targets = append(targets, cred)
	} else {
		creds, err := c.Credentials(ctx)
		if err != nil {
			return err
		}
		for _, cr := range creds {
			if cr.State == store.CredActive {
				targets = append(targets, cr)
			}
		}
		if len(targets) == 0 {
			return errors.New("no active credential to check; add one with 'rekey add' or a payload")
		}
	}
	checks := make([]api.CheckAnswer, 0, len(targets))
	rejected := 0
	for _, t := range targets {
		ans, err := c.Check(ctx, t.ID)
		if err != nil {
			return fmt.Errorf("check %q: %w", t.Name, err)
		}
		if ans.Outcome == "rejected" {
			rejected++
		}
		checks = append(checks, ans)
	}
	if *asJSON {
		if err := printJSON(env.Stdout, map[string]any{"checks": checks}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CREDENTIAL\tKEY ID\tOUTCOME\tREASON")
		for _, a := range checks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Name, a.KeyID, a.Outcome, a.Reason)
		}
		tw.Flush()
	}
	if rejected > 0 {
		return fmt.Errorf("%d of %d credentials %w; fix the key in Apple Business or School Manager, then 'rekey rotate'", rejected, len(checks), errRejected)
	}
	return nil
}

// checkTarget resolves check's CREDENTIAL: an active credential by id,
// name, Key ID or Client ID; else a tenant by id or name, for its active
// credential (a tenant keeps its name when a rotation brings a credential
// of another name, and the old name then belongs to a retired key); else
// any credential, to check a previous one.
func checkTarget(ctx context.Context, c *api.Client, arg string) (store.Credential, error) {
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
	if len(agent.MatchTarget(arg, active)) > 0 {
		return resolveCredential(ctx, c, arg, true)
	}
	tenants, err := c.Tenants(ctx)
	if err != nil {
		return store.Credential{}, err
	}
	var named []store.Tenant
	for _, t := range tenants {
		if t.ID == arg || strings.EqualFold(t.Name, arg) {
			named = append(named, t)
		}
	}
	if len(named) > 1 {
		return store.Credential{}, fmt.Errorf("%d tenants are named %q; name the credential by its id or Key ID instead ('rekey credentials' lists them)", len(named), arg)
	}
	if len(named) == 1 {
		for _, cr := range active {
			if cr.TenantID == named[0].ID {
				return cr, nil
			}
		}
	}
	return resolveCredential(ctx, c, arg, false)
}

// importAction is retry or dismiss: one import, one POST, the import after.
func importAction(name string, do func(c *api.Client, ctx context.Context, id string) (store.Import, error)) func(context.Context, *Env, []string) error {
	return func(ctx context.Context, env *Env, args []string) error {
		fs := newFlagSet(name, env.Stderr)
		sock := socketFlag(fs)
		asJSON := fs.Bool("json", false, "print the import as JSON afterwards")
		if err := parseInterspersed(fs, args); err != nil {
			return err
		}
		arg, err := oneArg(fs, "import id")
		if err != nil {
			return err
		}
		c, err := newClient(env, *sock)
		if err != nil {
			return err
		}
		defer c.Close()
		id, err := resolveImport(ctx, c, arg)
		if err != nil {
			return err
		}
		imp, err := do(c, ctx, id)
		if err != nil {
			return fmt.Errorf("%s %s: %w", name, id, err)
		}
		return printImportState(env, imp, *asJSON)
	}
}

var (
	runRetry   = importAction("retry", (*api.Client).Retry)
	runDismiss = importAction("dismiss", (*api.Client).Dismiss)
)
