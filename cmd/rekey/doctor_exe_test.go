package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/doctor"
)

func TestDoctorChecksTheRunningExecutable(t *testing.T) {
	withHooks(t, "linux", 0)
	exe := filepath.Join(t.TempDir(), "rekey")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		t.Fatal(err)
	}
	hooks.executable = func() (string, error) { return real, nil }
	_, args := doctorPaths(t)
	_, out, _ := runCLI(t, "", append([]string{"doctor", "--json"}, args...)...)
	var r doctor.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(r.Findings) == 0 || r.Findings[0].Check != "executable" || !strings.Contains(r.Findings[0].Message, real) {
		t.Fatalf("first finding is not the executable check on %s: %+v", real, r.Findings)
	}
}
