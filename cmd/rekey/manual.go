package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/platform"
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
func (in *credentialInput) complete(ctx context.Context, env *Env) error {
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
		if !isTTY {
			return usageError("%s is required (stdin is not a terminal to ask on)", f.flag)
		}
		fmt.Fprint(env.Stderr, f.prompt)
		line, err := promptLine(ctx, tty)
		if err != nil {
			fmt.Fprintln(env.Stderr) // the error's line does not follow the prompt's
			return fmt.Errorf("read %s: %w", strings.TrimPrefix(f.flag, "--"), err)
		}
		*f.v = strings.TrimSpace(string(line))
		if f.v == &in.keyFile {
			*f.v = typedPath(*f.v, env.Getenv("HOME"))
		}
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

// typedPath turns a file name typed or dropped at a prompt into a path, as
// the shell would have for a flag: a file dragged onto a terminal arrives
// quoted ('/Users/a/My Keys/k.pem') or with escaped spaces
// (/Users/a/My\ Keys/k.pem), and a person types ~/Downloads/k.pem.
func typedPath(s, home string) string {
	s = strings.TrimSpace(s)
	if n := len(s); n >= 2 && (s[0] == '\'' || s[0] == '"') && s[n-1] == s[0] {
		s = s[1 : n-1]
	} else if strings.Contains(s, `\`) {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		s = b.String()
	}
	if home != "" && (s == "~" || strings.HasPrefix(s, "~/")) {
		s = filepath.Join(home, s[1:])
	}
	return s
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
// connect asks for what the flags left out, reads the key and opens the
// agent's socket. The caller wipes req.PrivateKey (also on error) and
// closes c when err is nil.
func (in *credentialInput) connect(ctx context.Context, env *Env) (req api.CredentialRequest, c *api.Client, err error) {
	if err := in.complete(ctx, env); err != nil {
		return req, nil, err
	}
	if req, err = in.request(ctx, env); err != nil {
		return req, nil, err
	}
	c, err = newClient(env, *in.sock)
	return req, c, err
}

func (in *credentialInput) request(ctx context.Context, env *Env) (api.CredentialRequest, error) {
	req := api.CredentialRequest{Name: in.name, ClientID: in.clientID, KeyID: in.keyID, AuthCheck: in.authCheck,
		TokenURL: in.tokenURL, APIBaseURL: in.apiBaseURL}
	var r io.Reader = env.Stdin
	if tty, ok := terminal(env.Stdin); ok && in.keyFile == "-" {
		key, err := readPastedKey(ctx, tty, env.Stderr)
		req.PrivateKey = key
		return req, err
	}
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

// readPastedKey reads a PEM key pasted on the terminal tty, with echo off
// so that the key never shows on the screen or in its scrollback, up to its
// -----END line (or the end of input). The caller wipes the key.
func readPastedKey(ctx context.Context, tty *os.File, w io.Writer) (key api.Secret, err error) {
	restore, err := platform.NoEcho(int(tty.Fd()))
	if err != nil {
		return nil, fmt.Errorf("turn off terminal echo: %w", err)
	}
	defer func() {
		fmt.Fprintln(w)
		if rerr := restore(); rerr != nil && err == nil {
			err = fmt.Errorf("restore terminal: %w", rerr)
		}
		if err != nil {
			key.Wipe()
			key = nil
		}
	}()
	fmt.Fprint(w, "Paste the private key (PEM; it is not shown): ")
	key = make(api.Secret, 0, maxKeyFile+1) // no regrowth leaves an unwiped copy
	for {
		line, err := promptLine(ctx, tty)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return key, fmt.Errorf("read key: %w", err)
		}
		if len(key)+len(line)+1 > maxKeyFile {
			line.Wipe()
			return key, fmt.Errorf("read key: larger than %d bytes; paste the .p8/.pem key file's text", maxKeyFile)
		}
		key = append(append(key, line...), '\n')
		end := bytes.HasPrefix(bytes.TrimSpace(line), []byte("-----END "))
		line.Wipe()
		if end {
			break
		}
	}
	if len(bytes.TrimSpace(key)) == 0 {
		return key, usageError("--key -: nothing was pasted; paste the PEM text of the key downloaded from Apple, or give its file")
	}
	return key, nil
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

// notAppliedFix is what to do after a manual rotation or add that failed
// before anything changed: the record of the attempt waits in 'rekey status'
// until it is dismissed or a later attempt supersedes it.
func notAppliedFix(err error) string {
	if !errors.Is(err, api.ErrNotApplied) {
		return ""
	}
	return "; correct the Client ID, Key ID or key (or wait until the key is active in Apple Business or School Manager, or until its token endpoint can be reached) and run the command again"
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
	req, c, err := in.connect(ctx, env)
	defer req.PrivateKey.Wipe()
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
		return fmt.Errorf("rotate %s: %w%s", arg, err, notAppliedFix(err))
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
	req, c, err := in.connect(ctx, env)
	defer req.PrivateKey.Wipe()
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
		return fmt.Errorf("add %q: %w%s", req.Name, err, notAppliedFix(err))
	}
	if in.json {
		return printJSON(env.Stdout, ans)
	}
	fmt.Fprintf(env.Stdout, "Added: tenant %q (%s) with the active credential %q (Key ID %s); its first sync has started.\n",
		ans.Tenant.Name, ans.Tenant.ID, ans.Credential.Name, ans.Credential.KeyID)
	return nil
}
