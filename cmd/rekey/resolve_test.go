package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/store"
)

func TestImportIDPrefixResolvesWhenUnique(t *testing.T) {
	ids := []string{"3f2a9c01aa", "3f2a9c02bb", "77e1d0c4ff"}
	f := fakeAgent()
	f.ImportsFunc = func(context.Context) ([]store.Import, error) {
		var imps []store.Import
		for _, id := range ids {
			imps = append(imps, store.Import{ID: id, Name: "n-" + id, State: store.ImportPendingUnlock})
		}
		return imps, nil
	}
	f.ImportFunc = func(_ context.Context, id string) (store.Import, error) {
		for _, known := range ids {
			if id == known {
				return store.Import{ID: id, Name: "n-" + id, State: store.ImportPendingUnlock}, nil
			}
		}
		return store.Import{}, fmt.Errorf("import %s: %w", id, store.ErrNotFound)
	}
	sock := startAgent(t, f)

	code, out, errOut := runAt(t, sock, "", "imports", "77e1d0")
	if code != exitOK || !strings.Contains(out, "77e1d0c4ff") {
		t.Fatalf("unique prefix: code %d, out %q, err %q", code, out, errOut)
	}
	code, _, errOut = runAt(t, sock, "", "imports", "3f2a9c")
	if code != exitFailure || !strings.Contains(errOut, "2 imports start with") {
		t.Fatalf("ambiguous prefix: code %d, err %q", code, errOut)
	}
	code, _, errOut = runAt(t, sock, "", "imports", "77e1")
	if code != exitFailure || !strings.Contains(errOut, "not found") {
		t.Fatalf("too short a prefix must not match: code %d, err %q", code, errOut)
	}
}
