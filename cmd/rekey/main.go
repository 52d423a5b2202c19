// Command rekey is the credential-rotation agent and the CLI that talks to it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// Exit codes: 0 success, 1 failure, 2 a usage error (bad command, flag or argument).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// errUsage marks an error caused by how the command was called; it exits 2.
var errUsage = errors.New("usage")

// usageError wraps a message so that it is reported as a usage error.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

// Env is what a subcommand may touch of the outside world. Tests build one
// in process; main builds it from the real process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// command is one row of the command table: everything a help listing, a
// usage line, a completion script or a man page needs besides the flags.
// Those come from the FlagSet that run builds before it does anything else,
// so "rekey NAME -h" prints them, exits 0 and touches nothing.
type command struct {
	name string // what follows "rekey" on the command line
	// args is what follows the name in a usage line: the positional
	// arguments ("TENANT", "[ID]"), and flags only where their combination
	// needs saying. Empty when the command takes no positional arguments.
	args    string
	summary string // one line, lowercase, no final period
	example string // one whole command line as a person would type it
	hidden  bool   // a tool of the build (man), left out of help and completion
	run     func(ctx context.Context, env *Env, args []string) error
}

// commands is the command table, in the order help lists them: running and
// trying the agent, reading its state, acting on imports and tenants, the
// admin tools, the system service, and the version.
var commands = []command{
	{name: "run", summary: "run the agent in the foreground", run: runAgent,
		example: "rekey run --prefs-dir /tmp/rekey/managed --state-dir /tmp/rekey/state --socket /tmp/rekey/rekey.sock"},
	{name: "demo", summary: "tell the whole story in a temporary folder (no root, no network)", run: runDemo, example: "rekey demo"},
	{name: "status", summary: "show the agent, its source, tenants and pending imports", run: runStatus, example: "rekey status --json"},
	{name: "imports", args: "[ID]", summary: "list imports, or show one", run: runImports, example: "rekey imports 3f2a9c"},
	{name: "credentials", summary: "list credentials (never their keys)", run: runCredentials, example: "rekey credentials --json"},
	{name: "events", summary: "follow the agent's events as they happen (Ctrl-C to stop)", run: runEvents, example: "rekey events --json"},
	{name: "unlock", args: "ID [--add | --update CREDENTIAL] [--password-stdin]", summary: "unlock a waiting import", run: runUnlock,
		example: "rekey unlock 3f2a9c --update Acme"},
	{name: "retry", args: "IMPORT", summary: "retry a failed import from its payload entry, once the cause is fixed", run: runRetry,
		example: "rekey retry 3f2a9c"},
	{name: "dismiss", args: "IMPORT", summary: "decline a waiting or failed import", run: runDismiss, example: "rekey dismiss 3f2a9c"},
	{name: "rotate", args: "TENANT --name NAME --client-id ID --key-id ID --key FILE|-",
		summary: "replace a tenant's credential by hand: staged, validated, cut over, confirmed", run: runRotate,
		example: "rekey rotate Acme --name 'Acme 2027' --client-id BUSINESSAPI.9f3c1b2a-5d6e-4f70-8a9b-0c1d2e3f4a5b --key-id 7c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f --key ~/Downloads/acme-2027.pem"},
	{name: "add", args: "--name NAME --client-id ID --key-id ID --key FILE|-", summary: "add a credential by hand as a new tenant", run: runAdd,
		example: "rekey add --name Globex --client-id SCHOOLAPI.0a5f8a8e-3f4b-4d7c-9b1e-2c6d7e8f9a0b --key-id 1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9 --key - < globex.pem"},
	{name: "check", args: "[CREDENTIAL]", summary: "exchange credentials for a token now: accepted, rejected or unreachable", run: runCheck,
		example: "rekey check Acme"},
	{name: "rollback", args: "TENANT", summary: "swap a tenant back to its previous credential", run: runRollback, example: "rekey rollback Acme"},
	{name: "sync", args: "TENANT", summary: "import a tenant's devices and coverage now", run: runSync, example: "rekey sync Acme"},
	{name: "devices", args: "TENANT [--coverage STATE] [--expiring 90d] [--json | --csv]",
		summary: "list a tenant's devices with their coverage state, end date and release time", run: runDevices,
		example: "rekey devices Acme --coverage active --expiring 90d --csv > expiring.csv"},
	{name: "seal", summary: "encrypt a credential into a payload plist (and a configuration profile)", run: runSeal,
		example: "rekey seal --verify --name 'Acme 2027' --client-id BUSINESSAPI.9f3c1b2a-5d6e-4f70-8a9b-0c1d2e3f4a5b --key-id 7c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f --key acme-2027.pem --out acme.plist --mobileconfig acme.mobileconfig"},
	{name: "doctor", summary: "check the endpoint (store, key files, managed preferences, socket, service) and say how to fix each problem", run: runDoctor,
		example: "sudo rekey doctor --json"},
	{name: "install", args: "[--print] [--] [run flags...]", summary: "install the agent as a system service (launchd or systemd); flags go to 'rekey run'", run: runInstall,
		example: "sudo rekey install -- --admin-group staff"},
	{name: "uninstall", summary: "stop and remove the system service; the state folder stays", run: serviceAction("uninstall"), example: "sudo rekey uninstall"},
	{name: "start", summary: "start the installed system service", run: serviceAction("start"), example: "sudo rekey start"},
	{name: "stop", summary: "stop the system service", run: serviceAction("stop"), example: "sudo rekey stop"},
	{name: "service-status", summary: "show whether the system service is installed and running", run: runServiceStatus, example: "rekey service-status"},
	{name: "completion", args: "bash|zsh|fish", summary: "print a shell completion script", run: runCompletion,
		example: "rekey completion bash > /etc/bash_completion.d/rekey"},
	{name: "version", summary: "print the version", run: runVersion, example: "rekey version --json"},
	{name: "man", summary: "print the man page rekey.1 (roff), built from this table", run: runMan, hidden: true, example: "rekey man > rekey.1"},
}

// lookup finds the command called name.
func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// helpLine is the command's text in the help listing: the summary, and the
// usage line when the command takes arguments.
func (c command) helpLine() string {
	if c.args == "" {
		return c.summary
	}
	return c.summary + ": " + c.name + " " + c.args
}

// The main goroutine keeps the main thread to itself. Background work
// (a long key derivation, agent/background.go) ends on a thread at a lower
// priority that Go then discards; Go cannot end the main thread and would
// park it for good, and tools such as ps show the process's priority from
// that thread.
func init() { runtime.LockOSThread() }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	code := Run(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}

// Run dispatches args to a subcommand and returns the process exit code.
func Run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 {
		printUsage(env.Stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "-help":
		printUsage(env.Stdout)
		return exitOK
	case "--version", "-version":
		args = append([]string{"version"}, args[1:]...)
	case "help":
		if len(args) == 1 {
			printUsage(env.Stdout)
			return exitOK
		}
		args = []string{args[1], "-h"}
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(env.Stderr, "rekey: unknown command %q; run 'rekey help' for the list\n", args[0])
		return exitUsage
	}
	err := c.run(ctx, env, args[1:])
	var he *helpError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &he):
		printCommandHelp(env.Stdout, c, he.fs)
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	}
	code := exitFailure
	if errors.Is(err, errUsage) {
		code = exitUsage
	}
	if wantsJSON(args[1:]) && !errors.Is(err, errInOutput) {
		printJSONError(env.Stdout, err)
	} else {
		fmt.Fprintf(env.Stderr, "rekey %s: %v\n", c.name, err)
	}
	return code
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "rekey: credential rotation for MDM-managed endpoints")
	fmt.Fprintln(w, "\nusage: rekey <command> [flags]\n\ncommands:")
	for _, c := range commands {
		if !c.hidden {
			fmt.Fprintf(w, "  %-15s %s\n", c.name, c.helpLine())
		}
	}
	fmt.Fprintln(w, "\nRun 'rekey help <command>' or 'rekey <command> -h' for a command's flags and an example.")
}
