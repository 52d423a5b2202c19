package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// BenchmarkIdleProcess measures an idle agent as it runs in production:
// `rekey run` (the binary at REKEY_BIN, or one built from ./cmd/rekey) on
// temporary folders, with one tenant (added with the auth check off and no
// periodic sync, so nothing talks to Apple). Once it has applied the
// payload and answered on its socket it reads, over REKEY_IDLE_DURATION
// (default 60 s), the process's CPU time and wake-ups (the context
// switches of all its threads, from /proc/<pid>/task), and its resident
// memory at the end. It runs once whatever b.N is.
func BenchmarkIdleProcess(b *testing.B) {
	idle := 60 * time.Second
	if v := os.Getenv("REKEY_IDLE_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("REKEY_IDLE_DURATION=%q: %v; use a Go duration such as 60s", v, err)
		}
		idle = d
	}
	dir, err := os.MkdirTemp("", "rk") // short: a socket path must fit in 104 bytes
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.MkdirAll(filepath.Join(dir, "managed"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "passphrase"), []byte(testPassphrase+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	k, err := appletest.GenerateKey("")
	if err != nil {
		b.Fatal(err)
	}
	ct, err := payload.Seal(payload.SealInput{Name: "Idle", ClientID: k.ClientID, KeyID: k.KeyID, KeyPEM: k.PEM}, testPassphrase, 10)
	if err != nil {
		b.Fatal(err)
	}
	doc, err := payload.MarshalPayload([]payload.PayloadEntry{{ImportID: "idle", Intent: payload.IntentAdd, Name: "Idle", Ciphertext: ct}},
		map[string]string{payload.KeyAuthCheck: payload.AuthOff, payload.KeySyncInterval: "0"})
	if err != nil {
		b.Fatal(err)
	}
	if err := platform.WriteFileAtomic(platform.PrefsFile(filepath.Join(dir, "managed"), platform.Domain), doc, 0o644); err != nil {
		b.Fatal(err)
	}

	cmd := exec.Command(rekeyBinary(b, dir), "run", "--prefs-dir", filepath.Join(dir, "managed"), "--state-dir", filepath.Join(dir, "state"),
		"--socket", filepath.Join(dir, "s.sock"), "--passphrase-file", filepath.Join(dir, "passphrase"), "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	client := waitAPI(b, filepath.Join(dir, "s.sock"))
	for deadline := time.Now().Add(time.Minute); ; {
		imp, err := client.Import(context.Background(), "idle")
		if err == nil && imp.State == store.ImportApplied {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("import not applied within a minute: %+v, %v", imp, err)
		}
		time.Sleep(10 * time.Millisecond) // polling another process
	}
	client.Close()
	time.Sleep(2 * time.Second) // let the status file and the last events settle

	pid := cmd.Process.Pid
	cpu0, sw0 := procCPU(b, pid), procSwitches(b, pid)
	start := time.Now()
	time.Sleep(idle) // the measurement: the agent has nothing to do
	cpu, sw := procCPU(b, pid)-cpu0, procSwitches(b, pid)-sw0
	wall := time.Since(start)
	perMin := float64(time.Minute) / float64(wall)
	b.ReportMetric(ms(cpu)*perMin, "cpu-ms/min")
	b.ReportMetric(float64(sw)*perMin, "wakeups/min")
	b.ReportMetric(float64(procRSS(b, pid))/(1<<20), "rss-MiB")
	b.ReportMetric(wall.Seconds(), "idle-s")
}

// procCPU is the user plus system time of process pid (/proc/<pid>/stat,
// in clock ticks of 10 ms).
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // fields 14 and 15 of stat, counted after the command name
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// procSwitches sums the context switches of every thread of process pid.
func procSwitches(b *testing.B, pid int) int64 {
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
	if err != nil || len(tasks) == 0 {
		b.Fatalf("threads of process %d: %v", pid, err)
	}
	var n int64
	for _, p := range tasks {
		n += statusField(p, "voluntary_ctxt_switches:") + statusField(p, "nonvoluntary_ctxt_switches:")
	}
	return n
}

// procRSS is the resident set size of process pid in bytes.
func procRSS(b *testing.B, pid int) int64 {
	return statusField("/proc/"+strconv.Itoa(pid)+"/status", "VmRSS:") << 10
}

// statusField reads one number from a /proc status file (0 if absent).
func statusField(path, key string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			v, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return v
		}
	}
	return 0
}
