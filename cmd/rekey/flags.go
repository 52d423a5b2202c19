package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// errHelp is returned when the user asked for a command's help; it exits 0.
var errHelp = errors.New("help requested")

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("rekey "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// parseFlags parses args, maps -h to errHelp and anything else to a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		return errHelp
	default:
		return fmt.Errorf("%w: %v", errUsage, err)
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
