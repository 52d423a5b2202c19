package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// socketFlag adds --socket to fs.
func socketFlag(fs *flag.FlagSet) *string {
	return fs.String("socket", "", "the agent's socket (default: $REKEY_SOCKET, else the platform default)")
}

// resolveSocket picks the socket: the flag, then REKEY_SOCKET, then the
// platform default.
func resolveSocket(env *Env, flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v := env.Getenv("REKEY_SOCKET"); v != "" {
		return v, nil
	}
	p, err := platform.DefaultPaths()
	if err != nil {
		return "", fmt.Errorf("find the default socket (pass --socket): %w", err)
	}
	return p.Socket, nil
}

// newClient is the shared client setup of every command that talks to the agent.
func newClient(env *Env, flagValue string) (*api.Client, error) {
	sock, err := resolveSocket(env, flagValue)
	if err != nil {
		return nil, err
	}
	return api.NewClient(sock), nil
}

// printJSON writes v as indented JSON, the same shape the API answers.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// terminal returns the file behind r when it is a terminal.
func terminal(r any) (*os.File, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// readLine reads one line byte by byte, so nothing past the newline is taken
// from a terminal that term.ReadPassword reads next.
func readLine(r io.Reader) (string, error) {
	var b bytes.Buffer
	one := make([]byte, 1)
	for {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return strings.TrimRight(b.String(), "\r"), nil
			}
			b.WriteByte(one[0])
		}
		if err != nil {
			if errors.Is(err, io.EOF) && b.Len() > 0 {
				return strings.TrimRight(b.String(), "\r"), nil
			}
			return "", err
		}
	}
}

// when formats a time for people: local-independent, minutes, UTC.
func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// oneArg checks that exactly one positional argument was given.
func oneArg(fs *flag.FlagSet, what string) (string, error) {
	if fs.NArg() != 1 {
		return "", usageError("expected exactly one %s, got %d arguments", what, fs.NArg())
	}
	return fs.Arg(0), nil
}

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

// minImportPrefix is the shortest import id prefix the CLI accepts (ids
// default to 64 hex digits, as the brief fixes them).
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

// parseInterspersed is parseFlags allowing flags after positional arguments,
// as in "rekey unlock ID --add": flag parsing resumes after each positional.
// Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}
