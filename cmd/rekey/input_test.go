package main

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadLineTakesNothingPastTheNewline(t *testing.T) {
	long := strings.Repeat("x", 1000) // past the first buffer, so it grows
	r := strings.NewReader("first\r\n" + long + "\n\nlast")
	for _, want := range []string{"first", long, "", "last"} {
		got, err := readLine(r)
		if err != nil || string(got) != want {
			t.Fatalf("readLine = %q, %v; want %q", got, err, want)
		}
	}
	if got, err := readLine(r); !errors.Is(err, io.EOF) || got != nil {
		t.Fatalf("at the end: %q, %v; want io.EOF", got, err)
	}
}

func TestReadLineStopsAtMaxLine(t *testing.T) {
	r := strings.NewReader(strings.Repeat("y", maxLine+5) + "\n")
	got, err := readLine(r)
	if err != nil || len(got) != maxLine {
		t.Fatalf("got %d bytes, %v; want %d", len(got), err, maxLine)
	}
	if r.Len() != 6 {
		t.Fatalf("%d bytes left unread, want 6", r.Len())
	}
}

func TestReadSecretLineRefusesEmptyAndReportsReadErrors(t *testing.T) {
	for _, in := range []string{"", "\n", "\r\n"} {
		if _, err := readSecretLine(strings.NewReader(in)); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "no password") {
			t.Errorf("input %q: err %v, want a usage error saying there is no password", in, err)
		}
	}
	broken := io.MultiReader(strings.NewReader("hunter2"), iotest.ErrReader(errors.New("disk gone")))
	pw, err := readSecretLine(broken)
	if pw != nil || err == nil || !strings.Contains(err.Error(), "read password from stdin: disk gone") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("pw %q, err %v; want no password and an error naming the read", pw, err)
	}
	pw, err = readSecretLine(strings.NewReader("s3cret\r\nnext"))
	if err != nil || string(pw) != "s3cret" {
		t.Fatalf("pw %q, err %v", pw, err)
	}
}

func TestTypedPathIsReadAsTheShellWouldReadIt(t *testing.T) {
	for _, tc := range []struct{ typed, want string }{
		{"/keys/acme.pem", "/keys/acme.pem"},
		{"  /keys/acme.pem ", "/keys/acme.pem"},
		{"'/Users/a/My Keys/acme.pem' ", "/Users/a/My Keys/acme.pem"},
		{`"/Users/a/My Keys/acme.pem"`, "/Users/a/My Keys/acme.pem"},
		{`/Users/a/My\ Keys/acme\ \(1\).pem `, "/Users/a/My Keys/acme (1).pem"},
		{"~/Downloads/acme.pem", "/home/ann/Downloads/acme.pem"},
		{"'~/x.pem'", "/home/ann/x.pem"},
		{"~bob/x.pem", "~bob/x.pem"},
		{"acme.pem", "acme.pem"},
		{"'", "'"},
	} {
		if got := typedPath(tc.typed, "/home/ann"); got != tc.want {
			t.Errorf("typedPath(%q) = %q, want %q", tc.typed, got, tc.want)
		}
	}
	if got := typedPath("~/x.pem", ""); got != "~/x.pem" {
		t.Errorf("without a home folder: %q, want it unchanged", got)
	}
}
