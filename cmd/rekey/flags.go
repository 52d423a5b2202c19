package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// errHelp is returned when the user asked for a command's help; it exits 0.
var errHelp = errors.New("help requested")

// newFlagSet returns a flag set that reports errors instead of exiting or
// printing: Run prints a parse error once, and -h's help on stdout. out is
// kept for the signature's sake: nothing is written to it.
func newFlagSet(name string, _ io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("rekey "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args, maps -h to a *helpError carrying fs and anything
// else to a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		return &helpError{fs: fs}
	default:
		return fmt.Errorf("%w: %v; run '%s -h' for the flags", errUsage, err, fs.Name())
	}
}

// oneArg checks that exactly one positional argument was given.
func oneArg(fs *flag.FlagSet, what string) (string, error) {
	if fs.NArg() != 1 {
		return "", usageError("expected exactly one %s, got %d arguments", what, fs.NArg())
	}
	return fs.Arg(0), nil
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
