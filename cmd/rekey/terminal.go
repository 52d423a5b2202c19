package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rekeyd/rekey/platform"
)

// readSecret prints prompt on w and reads one line from the terminal tty
// without echo. Echo is turned off before the prompt appears, so nothing
// typed after it can show. An empty line gives no bytes and no error. The
// caller wipes the returned bytes.
func readSecret(tty *os.File, w io.Writer, prompt string) ([]byte, error) {
	restore, err := platform.NoEcho(int(tty.Fd()))
	if err != nil {
		return nil, fmt.Errorf("turn off terminal echo: %w", err)
	}
	fmt.Fprint(w, prompt)
	line, err := readSecretLine(tty)
	fmt.Fprintln(w)
	if rerr := restore(); rerr != nil && err == nil {
		err = fmt.Errorf("restore terminal: %w", rerr)
	}
	switch {
	case errors.Is(err, errUsage): // an empty line: the caller decides
		return nil, nil
	case err != nil:
		line.Wipe()
		return nil, err
	}
	return line, nil
}
