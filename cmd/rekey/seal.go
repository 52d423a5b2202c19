package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"golang.org/x/term"

	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
)

// maxKeyFile bounds the key file seal reads.
const maxKeyFile = 64 << 10

var domainRe = regexp.MustCompile(`^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$`)

type sealOptions struct {
	name, clientID, keyID, keyFile  string
	intent, target, importID        string
	passwordFile, out, mobileconfig string
	domain, organization            string
	workFactor                      int
	verify                          bool
	tokenURL                        string
}

func runSeal(ctx context.Context, env *Env, args []string) error {
	o, err := parseSealFlags(env, args)
	if err != nil {
		return err
	}
	in, err := o.input()
	if err != nil {
		return err
	}
	scope, keyPEM, err := in.Check()
	if err != nil {
		return fmt.Errorf("check credential: %w", err)
	}
	if o.verify {
		err = verifyWithApple(ctx, env, o.tokenURL, in, scope, keyPEM)
	}
	clear(keyPEM)
	if err != nil {
		return err
	}
	pass, err := sealPassphrase(ctx, env, o.passwordFile)
	if err != nil {
		return err
	}
	ct, err := payload.Seal(in, pass, o.workFactor)
	if err != nil {
		return err
	}
	entry := payload.PayloadEntry{ImportID: o.importID, Intent: o.intent, Target: o.target, Name: o.name, Ciphertext: ct}
	doc, err := payload.MarshalPayload([]payload.PayloadEntry{entry}, nil)
	if err != nil {
		return err
	}
	id, err := verifySealed(doc, pass, o.workFactor)
	if err != nil {
		return err
	}
	if err := platform.WriteFileAtomic(o.out, doc, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	fmt.Fprintf(env.Stdout, "wrote %s (ImportID %s, scrypt work factor %d)\n", o.out, id, o.workFactor)
	if o.mobileconfig == "" {
		return nil
	}
	prof, err := payload.MarshalProfile(payload.Profile{Domain: o.domain, Organization: o.organization,
		Preferences: payload.PreferenceSettings([]payload.PayloadEntry{entry}, nil)})
	if err != nil {
		return err
	}
	if err := platform.WriteFileAtomic(o.mobileconfig, prof, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", o.mobileconfig, err)
	}
	fmt.Fprintf(env.Stdout, "wrote %s (unsigned profile %s for domain %s)\n", o.mobileconfig, payload.Profile{Domain: o.domain}.Identifier(), o.domain)
	return nil
}

func parseSealFlags(env *Env, args []string) (*sealOptions, error) {
	o := &sealOptions{}
	fs := newFlagSet("seal", env.Stderr)
	fs.StringVar(&o.name, "name", "", "credential name shown in every UI (required)")
	fs.StringVar(&o.clientID, "client-id", "", "Client ID, BUSINESSAPI.<uuid> or SCHOOLAPI.<uuid> (required)")
	fs.StringVar(&o.keyID, "key-id", "", "Key ID, a UUID (required)")
	fs.StringVar(&o.keyFile, "key", "", "private key PEM file downloaded from Apple (required)")
	fs.StringVar(&o.intent, "intent", "", "add, update or auto (default auto)")
	fs.StringVar(&o.target, "target", "", "update or auto: the credential to replace (id, name, Key ID or Client ID)")
	fs.StringVar(&o.importID, "import-id", "", "ImportID (default: hex SHA-256 of the entry)")
	fs.IntVar(&o.workFactor, "work-factor", payload.DefaultWorkFactor, "scrypt work factor (log2 N)")
	fs.StringVar(&o.passwordFile, "password-file", "", "read the passphrase from this file (mode 0600) instead of the terminal")
	fs.StringVar(&o.out, "out", "", "payload plist to write (required)")
	fs.StringVar(&o.mobileconfig, "mobileconfig", "", "also write an unsigned configuration profile delivering the payload")
	fs.StringVar(&o.domain, "domain", platform.Domain, "managed-preferences domain of the profile")
	fs.StringVar(&o.organization, "organization", "", "PayloadOrganization of the profile")
	fs.BoolVar(&o.verify, "verify", false, "get a token with the credential from this machine first; a key Apple rejects is not sealed")
	fs.StringVar(&o.tokenURL, "token-url", apple.DefaultTokenURL, "token endpoint --verify asks (for tests and private deployments)")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, usageError("seal takes no arguments, got %q", fs.Arg(0))
	}
	return o, o.check(env)
}

func (o *sealOptions) check(env *Env) error {
	required := []struct{ flag, v string }{{"--name", o.name}, {"--client-id", o.clientID}, {"--key-id", o.keyID}, {"--key", o.keyFile}, {"--out", o.out}}
	for _, r := range required {
		if r.v == "" {
			return usageError("%s is required; run 'rekey seal -h' for the flags", r.flag)
		}
	}
	if err := keyFileArg(o.keyFile); err != nil {
		return err
	}
	if err := payload.CheckIntent(o.intent, o.target); err != nil {
		return usageError("--intent/--target: %v", err)
	}
	if o.importID != "" {
		if err := payload.CheckImportID(o.importID); err != nil {
			return usageError("--import-id: %v", err)
		}
	}
	if o.workFactor < payload.MinWorkFactor || o.workFactor > payload.MaxWorkFactorLimit {
		return usageError("--work-factor %d is outside %d..%d", o.workFactor, payload.MinWorkFactor, payload.MaxWorkFactorLimit)
	}
	if o.workFactor > payload.DefaultWorkFactor {
		fmt.Fprintf(env.Stderr, "rekey seal: warning: agents refuse work factors above their --max-work-factor (default %d)\n", payload.DefaultWorkFactor)
	}
	if err := payload.CheckURL(o.tokenURL); err != nil {
		return usageError("--token-url: %v; use an https:// URL (http:// only for localhost)", err)
	}
	if !domainRe.MatchString(o.domain) {
		return usageError("--domain %q is not a reverse-DNS name such as %s", o.domain, platform.Domain)
	}
	return nil
}

// input reads the key file into a SealInput.
func (o *sealOptions) input() (payload.SealInput, error) {
	f, err := os.Open(o.keyFile)
	if err != nil {
		return payload.SealInput{}, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	key, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return payload.SealInput{}, fmt.Errorf("read key file: %w", err)
	}
	if len(key) > maxKeyFile {
		return payload.SealInput{}, fmt.Errorf("read key file: larger than %d bytes; fix: give the .p8/.pem key file itself", maxKeyFile)
	}
	return payload.SealInput{Name: o.name, ClientID: o.clientID, KeyID: o.keyID, KeyPEM: key}, nil
}

// verifyWithApple exchanges the credential for a token at tokenURL, as the
// agent's auth check does, and refuses a key the endpoint rejects or that
// cannot be checked: a bad key then never reaches the fleet.
func verifyWithApple(ctx context.Context, env *Env, tokenURL string, in payload.SealInput, scope string, keyPEM []byte) error {
	key, err := payload.ParsePrivateKey(keyPEM)
	if err != nil {
		return fmt.Errorf("check private key: %w", err)
	}
	c := &apple.Client{TokenURL: tokenURL, MaxTries: 2}
	res := c.Check(ctx, apple.Credential{ClientID: in.ClientID, KeyID: in.KeyID, Scope: scope, Key: key})
	switch res.Outcome {
	case apple.Accepted:
		fmt.Fprintf(env.Stderr, "verified: %s issued a token for Key ID %s\n", tokenURL, in.KeyID)
		return nil
	case apple.Rejected:
		return fmt.Errorf("not sealed: the token endpoint rejected the credential (%s); fix: check the Client ID and Key ID, and that the key is active in Apple Business or School Manager", res.Reason)
	}
	return fmt.Errorf("not sealed: the credential could not be verified (%s); fix: check the network, or seal without --verify", res.Reason)
}

// sealPassphrase reads the passphrase from file, or asks twice on the
// terminal without echo.
func sealPassphrase(ctx context.Context, env *Env, file string) (string, error) {
	if file != "" {
		list, err := payload.ReadPassphrases(file, platform.DefaultTrust())
		if err != nil {
			return "", err
		}
		if len(list) != 1 {
			return "", fmt.Errorf("password file %s holds %d passphrases; fix: keep exactly one line for seal", file, len(list))
		}
		return list[0], nil
	}
	tty, ok := env.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(tty.Fd())) {
		return "", usageError("no terminal to ask for the passphrase on; use --password-file FILE (mode 0600)")
	}
	first, err := prompt(ctx, env, tty, "Passphrase: ")
	if err != nil {
		return "", err
	}
	again, err := prompt(ctx, env, tty, "Passphrase again: ")
	if err != nil {
		return "", err
	}
	if first != again {
		return "", errors.New("the two passphrases differ; fix: run seal again and type the same passphrase twice")
	}
	if first == "" {
		return "", errors.New("the passphrase is empty; fix: type a passphrase (a long random one is best)")
	}
	return first, nil
}

func prompt(ctx context.Context, env *Env, tty *os.File, text string) (string, error) {
	b, err := readSecret(ctx, tty, env.Stderr, text)
	if err != nil {
		return "", fmt.Errorf("read passphrase: %w", err)
	}
	defer clear(b)
	return string(b), nil
}

// verifySealed checks the written payload the way the agent will: it parses
// and the credential decrypts with the passphrase. It returns the ImportID.
func verifySealed(doc []byte, pass string, workFactor int) (string, error) {
	d, err := payload.Parse(doc)
	if err != nil {
		return "", fmt.Errorf("check written payload: %w", err)
	}
	if len(d.Problems) > 0 {
		return "", fmt.Errorf("check written payload: %w", &d.Problems[0])
	}
	c, err := payload.Decrypt(d.Entries[0].Ciphertext, []string{pass}, max(workFactor, payload.DefaultWorkFactor))
	if err != nil {
		return "", fmt.Errorf("check written payload: %w", err)
	}
	c.Wipe()
	return d.Entries[0].ImportID, nil
}
