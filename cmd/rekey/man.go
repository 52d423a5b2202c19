package main

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// roff escapes text for a man page: backslashes, hyphens, and a leading
// period or quote that roff would read as a request.
func roff(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

func runMan(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("man", env.Stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("man takes no arguments")
	}
	writeMan(env.Stdout)
	return nil
}

// writeMan writes rekey.1 from the command table and each command's flags.
func writeMan(w io.Writer) {
	fmt.Fprintf(w, `.TH REKEY 1 "" "rekey %s" "User Commands"
.SH NAME
rekey \- credential rotation agent for MDM\-managed endpoints, and its CLI
.SH SYNOPSIS
.B rekey
.I command
.RI [ flags ]
.RI [ arguments ]
.SH DESCRIPTION
rekey watches the managed preferences an MDM delivers for Apple Business Manager
and Apple School Manager API credentials, and rotates a tenant's credential
(staged, validated, cut over, confirmed) without losing its devices or coverage.
The same rotation runs when a person changes a credential by hand with
.BR "rekey rotate" .
The commands other than
.BR run ,
.BR demo ,
.BR seal ,
.BR doctor
and the service commands talk to the running agent over its local socket.
.PP
.B rekey help
.I command
and
.B rekey
.I command
.B \-h
print a command's usage line, flags and an example.
With
.BR \-\-json ,
a command prints JSON, and an error as the local API's error object
.RB { "\(dqerror\(dq: {\(dqcode\(dq, \(dqmessage\(dq}" }.
.SH COMMANDS
`, roff(version))
	for _, c := range shownCommands() {
		fs := commandFlags(c)
		fmt.Fprintf(w, ".SS \"%s\"\n%s.\n", roff(c.usageLine(fs)), roff(c.summary))
		for _, f := range flagsOf(fs) {
			if f.arg != "" { // the flag in bold, its value in italics: .BI "\-\-key " FILE
				fmt.Fprintf(w, ".TP\n.BI \"\\-\\-%s \" \"%s\"", roff(f.name), roff(f.arg))
			} else {
				fmt.Fprintf(w, ".TP\n.B \\-\\-%s", roff(f.name))
			}
			fmt.Fprintf(w, "\n%s", roff(f.usage))
			if f.def != "" {
				fmt.Fprintf(w, " (default %s)", roff(f.def))
			}
			fmt.Fprintln(w)
		}
		if c.example != "" {
			fmt.Fprintf(w, ".PP\nExample:\n.PP\n.RS\n.nf\n%s\n.fi\n.RE\n", roff(c.example))
		}
	}
	fmt.Fprint(w, `.SH EXIT STATUS
.TP
.B 0
success
.TP
.B 1
failure (with
.BR "rekey check" :
a credential was rejected)
.TP
.B 2
usage error: an unknown command, flag or argument
.SH ENVIRONMENT
.TP
.B REKEY_SOCKET
the agent's socket, when
.B \-\-socket
is not given
.SH FILES
.TP
.I /Library/Managed Preferences/com.github.rekeyd.rekey.plist
macOS payload (Linux:
.IR /etc/rekey/managed/com.github.rekeyd.rekey.plist )
.TP
.I /var/run/rekey.sock
macOS socket (Linux:
.IR /run/rekey/rekey.sock )
.TP
.I /Library/Application Support/rekey
macOS state folder (Linux:
.IR /var/lib/rekey )
.SH SEE ALSO
The README, docs/admin\-guide.md and docs/api.md of the rekey sources.
`)
}
