package main

import (
	"context"
	"fmt"
	"io"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

func runStatus(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("status", env.Stderr)
	sock := socketFlag(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("status takes no arguments")
	}
	c, err := newClient(env, *sock)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, st)
	}
	printStatus(env.Stdout, st)
	return nil
}

func printStatus(w io.Writer, st api.Status) {
	a := st.Agent
	fmt.Fprintf(w, "Agent      rekey %s, pid %d, uid %d, running since %s\n", a.Version, a.PID, a.UID, when(a.Started))
	fmt.Fprintf(w, "Source     %s, last read %s\n", st.Source.Path, when(st.Source.LastRead))
	if st.Source.LastError != "" {
		fmt.Fprintf(w, "           problem: %s\n", st.Source.LastError)
	}
	if len(st.Tenants) == 0 {
		fmt.Fprintln(w, "Tenants    none yet")
	}
	for _, t := range st.Tenants {
		fmt.Fprintf(w, "\nTenant     %s (%s, %s)\n", t.Name, t.ID, t.Scope)
		printSummary(w, "active", t.Active)
		printSummary(w, "previous", t.Previous)
		fmt.Fprintf(w, "  data       %d devices, %d coverage records, last sync %s\n", t.Devices, t.Coverage, when(t.LastSync))
		if n := t.Counts; n.Devices > 0 {
			fmt.Fprintf(w, "  coverage   %d active, %d expired, %d none, %d unknown; %d released\n",
				n.Active, n.Expired, n.None, n.Unknown, n.Released)
			f := t.Freshness
			fmt.Fprintf(w, "  freshness  oldest read %s, %d never read, %d not read within the sync interval\n",
				when(f.OldestCheck), f.Never, f.Stale)
		}
		if t.LastSyncError != "" {
			fmt.Fprintf(w, "  sync error %s\n", t.LastSyncError)
		}
	}
	fmt.Fprintf(w, "\nPending imports: %d\n", len(st.PendingImports))
	for _, imp := range st.PendingImports {
		fmt.Fprintf(w, "  %s  %q  %s", shortID(imp.ID), imp.Name, imp.State)
		if imp.Reason != "" {
			fmt.Fprintf(w, " (%s)", imp.Reason)
		}
		if next := nextStep(imp); next != "" {
			fmt.Fprintf(w, "  → %s", next)
		}
		fmt.Fprintln(w)
	}
	if r := st.LastRotation; r != nil {
		fmt.Fprintf(w, "Last rotation: %s in tenant %s, %s at %s", r.ID, r.TenantID, r.Step, when(r.UpdatedAt))
		if r.Reason != "" {
			fmt.Fprintf(w, " (%s)", r.Reason)
		}
		fmt.Fprintln(w)
	}
}

// nextStep is the command that moves a pending import on, by its state:
// a locked one is unlocked, one without a target is given one, a failed one
// from a payload is retried or declined. A failed manual rotation or add has
// no payload entry to retry: it is run again, and its record dismissed.
func nextStep(imp store.Import) string {
	id := shortID(imp.ID)
	switch {
	case imp.State == store.ImportPendingUnlock:
		return "rekey unlock " + id
	case imp.State == store.ImportNeedsTarget:
		return "rekey unlock " + id + " --update CREDENTIAL (or --add)"
	case imp.State == store.ImportFailed && imp.Source == agent.ManualSource:
		cmd := "rotate"
		if imp.Intent == payload.IntentAdd {
			cmd = "add"
		}
		return "run 'rekey " + cmd + "' again with the corrected credential; 'rekey dismiss " + id + "' clears this"
	case imp.State == store.ImportFailed:
		return "rekey retry " + id + " once the cause is fixed, or rekey dismiss " + id
	}
	return "" // applying: the agent is on it
}

func printSummary(w io.Writer, label string, c *api.CredentialSummary) {
	if c == nil {
		if label == "active" {
			fmt.Fprintf(w, "  %-10s none\n", label)
		}
		return
	}
	fmt.Fprintf(w, "  %-10s %s  %s  key %s  since %s", label, c.Name, c.ClientID, c.KeyID, when(c.Since))
	if !c.LastAuth.IsZero() {
		fmt.Fprintf(w, "  last token %s", when(c.LastAuth)) // the last accepted check or sync
	}
	fmt.Fprintln(w)
}

// shortID shortens a long import id (64 hex digits by default) to a prefix
// that the CLI accepts in its place, as git shortens commit hashes.
func shortID(id string) string {
	if len(id) > 16 {
		return id[:12]
	}
	return id
}
