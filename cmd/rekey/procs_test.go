package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api/apitest"
)

// TestRunGivesTheSchedulerOneSlotMore runs `rekey run` in a child process
// (this test binary again) and reads the number of Go scheduler slots it
// logs at debug level: one more than a fresh process's default
// (agent.SetProcs), or the GOMAXPROCS environment variable's number.
func TestRunGivesTheSchedulerOneSlotMore(t *testing.T) {
	switch os.Getenv("REKEY_TEST_PROCS_CHILD") {
	case "default":
		os.Stdout.WriteString(strconv.Itoa(runtime.GOMAXPROCS(0)) + "\n")
		os.Exit(0)
	case "run":
		env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
		os.Exit(Run(t.Context(), env, strings.Split(os.Getenv("REKEY_TEST_PROCS_ARGS"), "\n")))
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := func(kind string, env ...string) *exec.Cmd {
		cmd := exec.Command(self, "-test.run=^TestRunGivesTheSchedulerOneSlotMore$")
		cmd.Env = append(slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "GOMAXPROCS=") }),
			append(env, "REKEY_TEST_PROCS_CHILD="+kind)...)
		return cmd
	}
	out, err := child("default").Output()
	def, convErr := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || convErr != nil {
		t.Fatalf("default child: %q, %v %v", out, err, convErr)
	}
	logged := func(env ...string) int {
		dir := apitest.ShortTempDir(t)
		args := []string{"run", "--prefs-dir", filepath.Join(dir, "managed"), "--state-dir", filepath.Join(dir, "state"),
			"--socket", filepath.Join(dir, "s.sock"), "--log-level", "debug", "--log-file", ""}
		if err := os.MkdirAll(args[2], 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := child("run", append(env, "REKEY_TEST_PROCS_ARGS="+strings.Join(args, "\n"))...)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer cmd.Process.Kill()
		found := make(chan int, 1)
		go func() {
			re := regexp.MustCompile(`gomaxprocs=(\d+)`)
			for sc := bufio.NewScanner(stderr); sc.Scan(); {
				if m := re.FindStringSubmatch(sc.Text()); m != nil {
					n, _ := strconv.Atoi(m[1])
					found <- n
					return
				}
			}
			found <- -1
		}()
		select {
		case n := <-found:
			return n
		case <-time.After(30 * time.Second):
			t.Fatal("rekey run logged no gomaxprocs within 30 s")
		}
		return 0
	}
	if got := logged(); got != def+1 {
		t.Errorf("rekey run: gomaxprocs=%d, want %d (the default %d and one)", got, def+1, def)
	}
	if got := logged("GOMAXPROCS=1"); got != 1 {
		t.Errorf("rekey run with GOMAXPROCS=1: gomaxprocs=%d, want 1", got)
	}
}
