package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/rekeyd/rekey/agent/api"
)

// helpError is what a command returns for -h: its parsed FlagSet, from which
// Run prints the command's help on stdout.
type helpError struct{ fs *flag.FlagSet }

func (e *helpError) Error() string { return "help requested" }

// Is makes errors.Is(err, errHelp) true.
func (e *helpError) Is(target error) bool { return target == errHelp }

// usageLine is "rekey NAME ARGS [flags]".
func (c command) usageLine(fs *flag.FlagSet) string {
	line := "rekey " + c.name
	if c.args != "" {
		line += " " + c.args
	}
	if fs != nil && hasFlags(fs) {
		line += " [flags]"
	}
	return line
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// flagInfo is one flag as help, completion and the man page show it.
type flagInfo struct {
	name, arg, usage, def string
}

// flagsOf lists fs's flags by name: "--key FILE" style, with defaults that say something.
func flagsOf(fs *flag.FlagSet) []flagInfo {
	var out []flagInfo
	if fs == nil {
		return nil
	}
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		switch arg {
		case "":
		case "string":
			arg = strings.ToUpper(f.Name)
		case "int":
			arg = "N"
		default:
			arg = strings.ToUpper(arg)
		}
		def := f.DefValue
		if def == "false" || def == "0" || def == "" {
			def = ""
		}
		out = append(out, flagInfo{name: f.Name, arg: arg, usage: usage, def: def})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// printCommandHelp writes a command's usage line, summary, flags and example.
func printCommandHelp(w io.Writer, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.usageLine(fs), c.summary)
	if flags := flagsOf(fs); len(flags) > 0 {
		fmt.Fprintln(w, "\nflags:")
		for _, f := range flags {
			head := "  --" + f.name
			if f.arg != "" {
				head += " " + f.arg
			}
			fmt.Fprintf(w, "%s\n      %s", head, f.usage)
			if f.def != "" {
				fmt.Fprintf(w, " (default %s)", f.def)
			}
			fmt.Fprintln(w)
		}
	}
	if c.example != "" {
		fmt.Fprintf(w, "\nexample:\n  %s\n", c.example)
	}
}

// commandFlags runs c with -h, which every command answers by building its
// FlagSet and touching nothing else, and returns that FlagSet (nil for a
// command without one).
func commandFlags(c command) *flag.FlagSet {
	env := &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	var he *helpError
	if errors.As(c.run(context.Background(), env, []string{"-h"}), &he) {
		return he.fs
	}
	return nil
}

// errInOutput marks a failure that the command's output already reports
// (doctor's findings, check's outcomes): with --json no error object
// follows that output; the exit code and a line on stderr say it failed.
var errInOutput = quietError{}

type quietError struct{}

func (quietError) Error() string { return "" }

// wantsJSON reports whether --json is among a command's flags (before "--").
func wantsJSON(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "-json", "--json=true", "-json=true":
			return true
		}
	}
	return false
}

// errorCode is the code of err in a --json error object: the API's code
// when the agent answered with an error, else one of the CLI's own.
func errorCode(err error) string {
	var apiErr *api.APIError
	switch {
	case errors.As(err, &apiErr):
		return apiErr.Code
	case errors.Is(err, errUsage):
		return "usage"
	case errors.Is(err, api.ErrAgentNotRunning):
		return "agent_not_running"
	case errors.Is(err, errRejected):
		return "rejected"
	}
	return "failed"
}

// printJSONError writes err as the API's error object.
func printJSONError(w io.Writer, err error) {
	printJSON(w, api.ErrorBody{Error: api.ErrorDetail{Code: errorCode(err), Message: err.Error()}})
}
