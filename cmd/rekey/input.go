package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/platform"
)

// maxLine is the longest line readLine returns; the rest stays unread.
const maxLine = 64 << 10

// terminal returns the file behind r when it is a terminal.
func terminal(r any) (*os.File, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// readLine reads one line of r, one byte at a time: nothing past the newline
// is taken from r, and no buffer but the returned one ever holds the line,
// so the caller can wipe a password read with it. The line ends at a
// newline, at the end of input or after maxLine bytes; a final "\r" is
// dropped. At the end of input with nothing read, the error is io.EOF.
func readLine(r io.Reader) (api.Secret, error) {
	line := make(api.Secret, 0, 256)
	one := make([]byte, 1)
	defer func() { one[0] = 0 }()
	for len(line) < maxLine {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				break
			}
			if len(line) == cap(line) {
				grown := append(make(api.Secret, 0, 2*cap(line)), line...)
				line.Wipe()
				line = grown
			}
			line = append(line, one[0])
		}
		if errors.Is(err, io.EOF) {
			if len(line) == 0 {
				return nil, io.EOF
			}
			break
		}
		if err != nil {
			line.Wipe()
			return nil, err
		}
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line[n-1] = 0
		line = line[:n-1]
	}
	return line, nil
}

// promptLine is readLine of a person's answer at a prompt, given up when
// ctx ends: Ctrl-C cancels the command's context rather than killing it,
// and a read from a terminal cannot be interrupted. The read left behind
// ends with the process, which is about to exit.
func promptLine(ctx context.Context, r io.Reader) (api.Secret, error) {
	type result struct {
		line api.Secret
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := readLine(r)
		ch <- result{line, err}
	}()
	select {
	case res := <-ch:
		return res.line, res.err
	case <-ctx.Done():
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}
}

// readSecretLine reads the first line of r as a password. An empty line or
// empty input is a usage error.
func readSecretLine(r io.Reader) (api.Secret, error) {
	pw, err := readLine(r)
	switch {
	case errors.Is(err, io.EOF) || err == nil && len(pw) == 0:
		return nil, usageError("--password-stdin: stdin held no password")
	case err != nil:
		return nil, fmt.Errorf("read password from stdin: %w", err)
	}
	return pw, nil
}

// readSecret prints prompt on w and reads one line from the terminal tty
// without echo, giving up when ctx ends (Ctrl-C). Echo is turned off before
// the prompt appears, so nothing typed after it can show, and back on
// before it returns. An empty line gives no bytes and no error. The caller
// wipes the returned bytes.
func readSecret(ctx context.Context, tty *os.File, w io.Writer, prompt string) ([]byte, error) {
	restore, err := platform.NoEcho(int(tty.Fd()))
	if err != nil {
		return nil, fmt.Errorf("turn off terminal echo: %w", err)
	}
	fmt.Fprint(w, prompt)
	line, err := promptLine(ctx, tty)
	fmt.Fprintln(w)
	if rerr := restore(); rerr != nil && err == nil {
		err = fmt.Errorf("restore terminal: %w", rerr)
	}
	switch {
	case errors.Is(err, io.EOF): // no password: the caller decides
		return nil, nil
	case err != nil:
		line.Wipe()
		return nil, err
	}
	return line, nil
}
