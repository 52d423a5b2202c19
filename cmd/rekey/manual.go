package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

// credentialInput is what rotate and add read: the flags, then the
// terminal for what is missing, then the key file.
type credentialInput struct {
	name, clientID, keyID, keyFile, authCheck string
	tokenURL, apiBaseURL                      string // add only
	json                                      bool
	sock                                      *string
}

func (in *credentialInput) register(fs *flag.FlagSet, add bool) {
	in.sock = socketFlag(fs)
	fs.StringVar(&in.name, "name", "", "credential name shown in every UI")
	fs.StringVar(&in.clientID, "client-id", "", "Client ID, BUSINESSAPI.<uuid> or SCHOOLAPI.<uuid>")
	fs.StringVar(&in.keyID, "key-id", "", "Key ID, a UUID")
	fs.StringVar(&in.keyFile, "key", "", "private key PEM `FILE` downloaded from Apple, or - for stdin (never the key itself)")
	fs.StringVar(&in.authCheck, "auth-check", api.AuthRequired, "required, best-effort or off: get a token with the new key before it is used")
	fs.BoolVar(&in.json, "json", false, "print the answer as JSON")
	if add {
		fs.StringVar(&in.tokenURL, "token-url", "", "token endpoint of the new tenant (default Apple's; for tests and private deployments)")
		fs.StringVar(&in.apiBaseURL, "api-base-url", "", "API base URL of the new tenant (default Apple's for the scope)")
	}
}

// complete asks on the terminal for each missing field, in the order the
// Change Credential wizard asks: name, Client ID, Key ID, key file. Without
// a terminal a missing field is a usage error naming its flag.
func (in *credentialInput) complete(env *Env) error {
	fields := []struct {
		flag, prompt string
		v            *string
	}{
		{"--name", "Credential name: ", &in.name},
		{"--client-id", "Client ID: ", &in.clientID},
		{"--key-id", "Key ID: ", &in.keyID},
		{"--key", "Private key file (.pem): ", &in.keyFile},
	}
	tty, isTTY := terminal(env.Stdin)
	for _, f := range fields {
		if *f.v != "" {
			continue
		}
		if !isTTY || in.keyFile == "-" {
			return usageError("%s is required (stdin is not a terminal to ask on)", f.flag)
		}
		fmt.Fprint(env.Stderr, f.prompt)
		line, err := readLine(tty)
		if err != nil {
			return fmt.Errorf("read %s: %w", strings.TrimPrefix(f.flag, "--"), err)
		}
		*f.v = strings.TrimSpace(string(line))
		if *f.v == "" {
			return usageError("%s is required", f.flag)
		}
	}
	if err := keyFileArg(in.keyFile); err != nil {
		return err
	}
	switch in.authCheck {
	case api.AuthRequired, api.AuthBestEffort, api.AuthOff:
	default:
		return usageError("--auth-check %q: use required, best-effort or off", in.authCheck)
	}
	return nil
}

// keyFileArg refuses a --key value that is a key rather than a file name,
// without repeating it: a key on the command line lands in the shell
// history and in every user's process list.
func keyFileArg(v string) error {
	if strings.Contains(v, "-----BEGIN") || strings.ContainsAny(v, "\n\r") {
		return usageError("--key takes the key's file (or - for stdin), not the key itself; the key given on the command line is now in your shell history: delete it there, and consider revoking the key")
	}
	return nil
}

// request reads the key file (or stdin) into a request. The caller wipes
// its PrivateKey.
func (in *credentialInput) request(env *Env) (api.CredentialRequest, error) {
	req := api.CredentialRequest{Name: in.name, ClientID: in.clientID, KeyID: in.keyID, AuthCheck: in.authCheck,
		TokenURL: in.tokenURL, APIBaseURL: in.apiBaseURL}
	var r io.Reader = env.Stdin
	if in.keyFile != "-" {
		f, err := os.Open(in.keyFile)
		if err != nil {
			return req, fmt.Errorf("read key file: %w", err)
		}
		defer f.Close()
		r = f
	}
	key, err := readKey(r)
	if err != nil {
		return req, err
	}
	req.PrivateKey = key
	return req, nil
}

// readKey reads a PEM key of at most maxKeyFile bytes into a buffer sized
// up front, so that no regrowth leaves an unwiped copy.
func readKey(r io.Reader) (api.Secret, error) {
	buf := make(api.Secret, maxKeyFile+1)
	n, err := io.ReadFull(r, buf)
	switch {
	case n > maxKeyFile:
		buf.Wipe()
		return nil, fmt.Errorf("read key: larger than %d bytes; give the .p8/.pem key file itself", maxKeyFile)
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF):
		buf.Wipe()
		return nil, fmt.Errorf("read key: %w", err)
	case n == 0:
		return nil, usageError("--key: the key is empty; give the PEM file downloaded from Apple")
	}
	return buf[:n], nil
}

func runRotate(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("rotate", env.Stderr)
	var in credentialInput
	in.register(fs, false)
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	arg, err := oneArg(fs, "tenant (id, name, or its credential's id, name, Key ID or Client ID)")
	if err != nil {
		return err
	}
	if err := in.complete(env); err != nil {
		return err
	}
	req, err := in.request(env)
	defer req.PrivateKey.Wipe()
	if err != nil {
		return err
	}
	c, err := newClient(env, *in.sock)
	if err != nil {
		return err
	}
	defer c.Close()
	tenantID, err := resolveTenant(ctx, c, arg)
	if err != nil {
		return err
	}
	steps := followSteps(ctx, env, c, !in.json, func(e store.Event) bool {
		return e.TenantID == tenantID && strings.HasPrefix(string(e.Kind), "rotation.") ||
			e.Kind == store.EvAuthCheck && e.Fields["key_id"] == req.KeyID
	})
	ans, err := c.Rotate(ctx, tenantID, req)
	switch {
	case err == nil:
		steps.wait(func(e store.Event) bool {
			return e.RotationID == ans.Rotation.ID && e.Fields["step"] == string(ans.Rotation.Step)
		})
	case errors.Is(err, api.ErrNotApplied):
		steps.wait(func(e store.Event) bool { return e.Kind == store.EvRotationFailed })
	}
	steps.stop()
	if err != nil {
		return fmt.Errorf("rotate %s: %w", arg, err)
	}
	if in.json {
		return printJSON(env.Stdout, ans)
	}
	fmt.Fprintf(env.Stdout, "Rotated: %q (Key ID %s) is the active credential; rotation %s is %s.\n",
		req.Name, req.KeyID, ans.Rotation.ID, ans.Rotation.Step)
	if ans.Rotation.Step == store.StepCutover {
		fmt.Fprintln(env.Stdout, "The old credential is kept as previous ('rekey rollback' swaps back) until the new one gets a token ('rekey check').")
	}
	return nil
}

func runAdd(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("add", env.Stderr)
	var in credentialInput
	in.register(fs, true)
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("add takes no arguments, got %q; pass the credential with --name, --client-id, --key-id and --key", fs.Arg(0))
	}
	if err := in.complete(env); err != nil {
		return err
	}
	req, err := in.request(env)
	defer req.PrivateKey.Wipe()
	if err != nil {
		return err
	}
	c, err := newClient(env, *in.sock)
	if err != nil {
		return err
	}
	defer c.Close()
	steps := followSteps(ctx, env, c, !in.json, func(e store.Event) bool {
		return (e.Kind == store.EvAuthCheck || e.Kind == store.EvCredentialAdded) && e.Fields["key_id"] == req.KeyID
	})
	ans, err := c.Add(ctx, req)
	if err == nil {
		steps.wait(func(e store.Event) bool { return e.Kind == store.EvCredentialAdded })
	}
	steps.stop()
	if err != nil {
		return fmt.Errorf("add %q: %w", req.Name, err)
	}
	if in.json {
		return printJSON(env.Stdout, ans)
	}
	fmt.Fprintf(env.Stdout, "Added: tenant %q (%s) with the active credential %q (Key ID %s); its first sync has started.\n",
		ans.Tenant.Name, ans.Tenant.ID, ans.Credential.Name, ans.Credential.KeyID)
	return nil
}
