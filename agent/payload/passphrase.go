package payload

import (
	"bytes"
	"fmt"

	"github.com/rekeyd/rekey/platform"
)

// maxPassphraseFile bounds a passphrase file when the rule sets no limit.
const maxPassphraseFile = 64 << 10

// ReadPassphrases reads a passphrase file: one passphrase per line, tried in
// order; blank lines are ignored and CRLF line ends tolerated. The file must
// pass r with Private forced on (mode 0600 or stricter). A missing file wraps
// fs.ErrNotExist, a refused one platform.ErrUntrusted, a file without any
// passphrase ErrNoPassphrases. Passphrases are never part of an error.
func ReadPassphrases(path string, r platform.TrustRule) ([]string, error) {
	r.Private = true
	if r.MaxSize == 0 {
		r.MaxSize = maxPassphraseFile
	}
	data, err := platform.ReadTrusted(path, r)
	if err != nil {
		return nil, fmt.Errorf("read passphrase file: %w", err)
	}
	defer clear(data)
	var out []string
	for line := range bytes.Lines(data) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		out = append(out, string(line))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read passphrase file %s: %w; fix: write one passphrase per line, or remove the file", path, ErrNoPassphrases)
	}
	return out, nil
}
