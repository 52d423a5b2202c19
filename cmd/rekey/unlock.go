package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

// maxPasswordTries is how often a terminal user may retype a wrong password.
const maxPasswordTries = 3

type unlockCmd struct {
	env    *Env
	client *api.Client
	id     string
	tty    *os.File // nil unless stdin is a terminal
	req    api.UnlockRequest
	chosen bool // intent decided by a flag or the user
}

func runUnlock(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("unlock", env.Stderr)
	sock := socketFlag(fs)
	add := fs.Bool("add", false, "add the import as a new credential in a new tenant")
	update := fs.String("update", "", "replace `CREDENTIAL` (id, name, Key ID or Client ID)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin")
	asJSON := fs.Bool("json", false, "print the import as JSON afterwards")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	id, err := oneArg(fs, "import id")
	if err != nil {
		return err
	}
	if *add && *update != "" {
		return usageError("--add and --update exclude each other")
	}
	tty, isTTY := terminal(env.Stdin)
	if !*fromStdin && !isTTY {
		return usageError("stdin is not a terminal: pass the password on stdin with --password-stdin")
	}
	c, err := newClient(env, *sock)
	if err != nil {
		return err
	}
	defer c.Close()
	if id, err = resolveImport(ctx, c, id); err != nil {
		return err
	}
	u := &unlockCmd{env: env, client: c, id: id}
	if isTTY && !*fromStdin {
		u.tty = tty
	}
	switch {
	case *add:
		u.req.Intent, u.chosen = "add", true
	case *update != "":
		u.req.Intent, u.req.Target, u.chosen = "update", *update, true
	}
	defer u.req.Password.Wipe()
	if *fromStdin {
		if u.req.Password, err = readSecretLine(env.Stdin); err != nil {
			return err
		}
	}
	imp, err := u.run(ctx)
	if err != nil {
		return err
	}
	return printImportState(env, imp, *asJSON)
}

// run shows the import, asks what is missing on a terminal, and sends the
// request until it succeeds or fails for a reason the user cannot fix here.
func (u *unlockCmd) run(ctx context.Context) (store.Import, error) {
	imp, err := u.client.Import(ctx, u.id)
	if err != nil {
		return store.Import{}, err
	}
	if imp.State.Final() || imp.State == store.ImportApplying {
		return store.Import{}, fmt.Errorf("import %s is %s: there is nothing to unlock", u.id, imp.State)
	}
	if u.tty != nil {
		printImport(u.env.Stderr, imp)
		if imp.State == store.ImportNeedsTarget && !u.chosen {
			if err := u.choose(ctx); err != nil {
				return store.Import{}, err
			}
		}
		if imp.State != store.ImportNeedsTarget && u.req.Password == nil {
			if err := u.askPassword(ctx); err != nil {
				return store.Import{}, err
			}
		}
	}
	for tries := 1; ; tries++ {
		imp, err = u.client.Unlock(ctx, u.id, u.req)
		if err == nil || u.tty == nil {
			return imp, u.explain(err)
		}
		switch {
		case errors.Is(err, api.ErrWrongPassword) && tries < maxPasswordTries:
			fmt.Fprintln(u.env.Stderr, "That password is wrong; try again.")
			err = u.askPassword(ctx)
		case errors.Is(err, api.ErrPasswordRequired) && tries < maxPasswordTries:
			err = u.askPassword(ctx)
		case errors.Is(err, api.ErrNeedsChoice) && !u.chosen:
			fmt.Fprintln(u.env.Stderr, err.Error())
			err = u.choose(ctx)
		default:
			return imp, u.explain(err)
		}
		if err != nil {
			return store.Import{}, err
		}
	}
}

// explain adds the next step to the errors a user can act on.
func (u *unlockCmd) explain(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, api.ErrNeedsChoice):
		return fmt.Errorf("unlock %s: %w; pass --add or --update CREDENTIAL ('rekey credentials' lists them)", u.id, err)
	}
	return fmt.Errorf("unlock %s: %w", u.id, err)
}

func (u *unlockCmd) askPassword(ctx context.Context) error {
	u.req.Password.Wipe()
	pw, err := readSecret(ctx, u.tty, u.env.Stderr, "Password for this import: ")
	if err != nil {
		return fmt.Errorf("read password: %w", err)
	}
	if len(pw) == 0 {
		return errors.New("no password given")
	}
	u.req.Password = api.Secret(pw)
	return nil
}

// choose asks whether to add or which active credential to update.
func (u *unlockCmd) choose(ctx context.Context) error {
	creds, err := u.client.Credentials(ctx)
	if err != nil {
		return err
	}
	var active []store.Credential
	for _, c := range creds {
		if c.State == store.CredActive {
			active = append(active, c)
		}
	}
	w := u.env.Stderr
	fmt.Fprintln(w, "\nAdd this credential as a new tenant, or let it replace an existing one?")
	fmt.Fprintln(w, "  [a] add as a new credential")
	for i, c := range active {
		fmt.Fprintf(w, "  [%d] update %s (%s, key %s)\n", i+1, c.Name, c.ClientID, c.KeyID)
	}
	for {
		fmt.Fprint(w, "Choice: ")
		raw, err := promptLine(ctx, u.tty)
		if err != nil {
			return fmt.Errorf("read choice: %w", err)
		}
		line := strings.TrimSpace(strings.ToLower(string(raw)))
		if line == "a" || line == "add" {
			u.req.Intent, u.req.Target, u.chosen = "add", "", true
			return nil
		}
		if n, err := strconv.Atoi(line); err == nil && n >= 1 && n <= len(active) {
			u.req.Intent, u.req.Target, u.chosen = "update", active[n-1].ID, true
			return nil
		}
		fmt.Fprintf(w, "Type a, or a number from 1 to %d.\n", len(active))
	}
}
