package apple_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
)

// failingSink refuses the first page with an error that names it.
type failingSink struct{ *memSink }

func (s failingSink) Page(context.Context, []apple.Device, string) error { return errSinkFull }

func TestNoSecretInErrorsOrFormatting(t *testing.T) {
	f := newFixture(t, 20)
	var texts []string
	add := func(what string, err error) {
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		texts = append(texts, fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
	}
	check := func(what string, fault appletest.Fault) {
		f.srv.ClearFaults()
		f.srv.Fail(fault)
		res := f.client.Check(t.Context(), f.cred)
		texts = append(texts, res.Reason)
		add(what, res.Err)
	}
	check("invalid_client", appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.InvalidClient})
	check("malformed token answer", appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.Malformed})
	check("token 503", appletest.Fault{Endpoint: appletest.TokenEndpoint, Mode: appletest.ServerError, Times: -1})
	f.srv.ClearFaults()

	sync := func(what string, fault appletest.Fault) {
		f.srv.ClearFaults()
		f.srv.Fail(fault)
		add(what, f.sync(t.Context(), newSink(), nil))
	}
	sync("401 twice", appletest.Fault{Endpoint: appletest.DevicesEndpoint, Mode: appletest.Unauthorized, Times: 2})
	sync("coverage 503", appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.ServerError, Times: -1})
	sync("malformed page", appletest.Fault{Endpoint: appletest.DevicesEndpoint, Mode: appletest.Malformed})
	f.srv.ClearFaults()
	add("sink", f.client.Sync(t.Context(), f.cred, f.budget, apple.SyncState{}, failingSink{newSink()}, nil))

	texts = append(texts,
		fmt.Sprintf("%v", f.cred), fmt.Sprintf("%+v", f.cred), fmt.Sprintf("%#v", f.cred), fmt.Sprint(&f.cred),
		fmt.Sprintf("%v", f.client), fmt.Sprintf("%+v", f.client), fmt.Sprintf("%#v", f.client))

	raw, err := f.key.Private.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"PEM":            string(f.key.PEM),
		"PEM body line":  strings.Split(string(f.key.PEM), "\n")[1],
		"private scalar": hex.EncodeToString(raw),
		"a JWT":          "eyJ",
	}
	tokens := f.srv.Tokens()
	if len(tokens) < 2 {
		t.Fatalf("fake issued %d tokens; the test needs some to look for", len(tokens))
	}
	for i, tok := range tokens {
		secrets[fmt.Sprintf("token %d", i)] = tok
	}
	for _, text := range texts {
		for name, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s appears in %q", name, text)
			}
		}
	}
	if testing.Verbose() {
		for _, text := range texts {
			t.Log(text)
		}
	}
}
