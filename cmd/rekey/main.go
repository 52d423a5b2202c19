// Command rekey is the credential-rotation agent and the CLI that talks to it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	run     func(ctx context.Context, env *Env, args []string) error
}

// commands is the command table, in the order help lists them: running and
// trying the agent, reading its state, acting on imports and tenants, the
// admin tools, the system service, and the version.
var commands = []command{
	{name: "run", summary: "run the agent in the foreground", run: runAgent},
	{name: "demo", summary: "tell the whole story in a temporary folder (no root, no network)", run: runDemo},
	{name: "status", summary: "show the agent, its source, tenants and pending imports", run: runStatus},
	{name: "imports", args: "[ID]", summary: "list imports, or show one", run: runImports},
	{name: "credentials", summary: "list credentials (never their keys)", run: runCredentials},
	{name: "events", summary: "follow the agent's events as they happen (Ctrl-C to stop)", run: runEvents},
	{name: "unlock", args: "ID [--add | --update CREDENTIAL] [--password-stdin]", summary: "unlock a waiting import", run: runUnlock},
	{name: "rollback", args: "TENANT", summary: "swap a tenant back to its previous credential", run: runRollback},
	{name: "sync", args: "TENANT", summary: "import a tenant's devices and coverage now", run: runSync},
	{name: "devices", args: "TENANT [--coverage STATE] [--expiring 90d] [--json | --csv]", summary: "list a tenant's devices with their coverage state, end date and release time", run: runDevices},
	{name: "seal", summary: "encrypt a credential into a payload plist (and a configuration profile)", run: runSeal},
	{name: "doctor", summary: "check the endpoint (store, key files, managed preferences, socket, service) and say how to fix each problem", run: runDoctor},
	{name: "install", summary: "install the agent as a system service (launchd or systemd); flags go to 'rekey run'", run: runInstall},
	{name: "uninstall", summary: "stop and remove the system service; the state folder stays", run: serviceAction("uninstall")},
	{name: "start", summary: "start the installed system service", run: serviceAction("start")},
	{name: "stop", summary: "stop the system service", run: serviceAction("stop")},
	{name: "service-status", summary: "show whether the system service is installed and running", run: runServiceStatus},
	{name: "version", summary: "print the version", run: runVersion},
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	code := Run(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}

// Run dispatches args to a subcommand and returns the process exit code.
func Run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(env.Stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(env.Stderr, "rekey: unknown command %q; run 'rekey help' for the list\n", args[0])
		return exitUsage
	}
	err := c.run(ctx, env, args[1:])
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "rekey %s: %v\n", c.name, err)
		return exitUsage
	default:
		fmt.Fprintf(env.Stderr, "rekey %s: %v\n", c.name, err)
		return exitFailure
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "rekey: credential rotation for MDM-managed endpoints")
	fmt.Fprintln(w, "\nusage: rekey <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-15s %s\n", c.name, c.helpLine())
	}
	fmt.Fprintln(w, "\nRun 'rekey <command> -h' for a command's flags.")
}
