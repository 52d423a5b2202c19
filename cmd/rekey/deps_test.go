package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The binary carries no test machinery: package testing (and so its flags)
// must not be among its dependencies. A test helper that takes a
// testing.TB in a package the binary imports brings it in.
func TestBinaryDoesNotImportTesting(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("find the go command to list the binary's dependencies: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if deps := strings.Fields(string(out)); slices.Contains(deps, "testing") {
		t.Errorf("cmd/rekey depends on package testing; find why with: go list -deps -f '{{.ImportPath}}: {{.Imports}}' ./cmd/rekey | grep -w testing")
	}
}
