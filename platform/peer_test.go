package platform

import (
	"bufio"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestPeerOfReportsTheConnectingProcess(t *testing.T) {
	dir, err := os.MkdirTemp("", "rkp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan Peer, 1)
	errs := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			errs <- err
			return
		}
		defer c.Close()
		p, err := PeerOf(c)
		if err != nil {
			errs <- err
			return
		}
		done <- p
	}()
	c, err := net.Dial("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case err := <-errs:
		t.Fatal(err)
	case p := <-done:
		want := Peer{UID: os.Getuid(), GID: os.Getgid(), PID: os.Getpid()}
		if p != want {
			t.Fatalf("peer %+v, want %+v", p, want)
		}
	}
}

func TestPeerOfRefusesNonUnixConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := PeerOf(c); err == nil || !strings.Contains(err.Error(), "not a Unix socket") {
		t.Fatalf("err %v, want a not-a-Unix-socket error", err)
	}
}

func TestUserInGroup(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("this test needs a nobody user: %v", err)
	}
	nobodyUID, _ := strconv.Atoi(nobody.Uid)
	primary, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		uid   int
		group string
		want  bool
	}{
		{"root is in its primary group", 0, "root", true},
		{"nobody is in its primary group", nobodyUID, primary.Name, true},
		{"nobody is not in root", nobodyUID, "root", false},
		{"missing group is false", 0, "no-such-group-rk", false},
		{"missing user is false", 987654, "root", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := UserInGroup(tt.uid, tt.group)
			if err != nil || got != tt.want {
				t.Fatalf("UserInGroup(%d, %q) = %v, %v; want %v", tt.uid, tt.group, got, err, tt.want)
			}
		})
	}
}

// TestUserInGroupSeesSupplementaryGroups finds a supplementary membership in
// /etc/group and checks that UserInGroup reports it.
func TestUserInGroupSeesSupplementaryGroups(t *testing.T) {
	f, err := os.Open("/etc/group")
	if err != nil {
		t.Skipf("no /etc/group on this system: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 4 || fields[3] == "" {
			continue
		}
		for _, name := range strings.Split(fields[3], ",") {
			u, err := user.Lookup(name)
			if err != nil {
				continue
			}
			uid, _ := strconv.Atoi(u.Uid)
			got, err := UserInGroup(uid, fields[0])
			if err != nil || !got {
				t.Fatalf("UserInGroup(%s, %s) = %v, %v; want true", name, fields[0], got, err)
			}
			return
		}
	}
	t.Skip("no supplementary group membership in /etc/group to check")
}
