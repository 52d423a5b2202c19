package store_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/rekeyd/rekey/store"
)

// crashEnv switches the test binary into the crash child (see TestMain).
const crashEnv = "REKEY_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		if err := crashChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	code := m.Run()
	removeFixtures()
	os.Exit(code)
}

const crashTenants = 2

// crashBatchSize devices (each with a coverage record) per reported batch;
// crashMaxLines is the most reports the parent waits for before a kill.
var crashBatchSize, crashMaxLines = 50, 12

func init() {
	if raceEnabled {
		crashBatchSize, crashMaxLines = 10, 4
	}
}

// crashChild runs rotations and device+coverage batches until it is killed,
// writing one line to stdout after each commit: "batch <tenant> <prefix>",
// "rot <id> <step>".
func crashChild(dir string) error {
	ctx := context.Background()
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		return err
	}
	report := func(format string, args ...any) { fmt.Fprintf(os.Stdout, format+"\n", args...) }
	tenants, err := s.Tenants(ctx)
	if err != nil {
		return err
	}
	for len(tenants) < crashTenants {
		t, _, _, err := s.AddCredential(ctx, newCred("crash"), "")
		if err != nil {
			return err
		}
		tenants = append(tenants, t)
	}
	// Resume what the last child left unfinished: fail it or carry it through.
	open, err := s.UnfinishedRotations(ctx)
	if err != nil {
		return err
	}
	for _, r := range open {
		if rand.IntN(2) == 0 {
			if _, err := s.FailRotation(ctx, r.ID, "interrupted"); err != nil {
				return err
			}
			report("rot %s failed", r.ID)
			continue
		}
		if err := crashRotate(ctx, s, r, report); err != nil {
			return err
		}
	}
	for {
		t := tenants[rand.IntN(len(tenants))]
		if rand.IntN(3) == 0 {
			r, _, _, err := s.Stage(ctx, t.ID, newCred("next"))
			if err != nil {
				return err
			}
			report("rot %s staged", r.ID)
			if err := crashRotate(ctx, s, r, report); err != nil {
				return err
			}
			continue
		}
		if err := crashBatch(ctx, s, t.ID, report); err != nil {
			return err
		}
	}
}

func crashRotate(ctx context.Context, s *store.Store, r store.Rotation, report func(string, ...any)) error {
	if _, err := s.Validated(ctx, r.ID); err != nil {
		return err
	}
	report("rot %s validated", r.ID)
	if _, err := s.Cutover(ctx, r.ID); err != nil {
		return err
	}
	report("rot %s cutover", r.ID)
	switch rand.IntN(3) {
	case 0:
		if _, err := s.Confirm(ctx, r.TenantID, r.ToCredentialID); err != nil {
			return err
		}
		report("rot %s confirmed", r.ID)
	case 1:
		if _, err := s.Rollback(ctx, r.TenantID); err != nil {
			return err
		}
		report("rot %s rolled-back", r.ID)
	}
	return nil
}

func crashBatch(ctx context.Context, s *store.Store, tenantID string, report func(string, ...any)) error {
	prefix := fmt.Sprintf("B%08x-", rand.Uint32())
	devs := make([]store.Device, crashBatchSize)
	cov := make([]store.DeviceCoverage, crashBatchSize)
	for i := range devs {
		serial := fmt.Sprintf("%s%03d", prefix, i)
		devs[i] = store.Device{Serial: serial, Model: "Mac14,2", Attrs: []byte(`{"n":1}`)}
		cov[i] = store.DeviceCoverage{Serial: serial, Records: []store.Coverage{{ID: "c-" + serial, Status: "ACTIVE"}}}
	}
	if err := s.UpsertDevices(ctx, tenantID, devs); err != nil {
		return err
	}
	if err := s.UpsertCoverage(ctx, tenantID, cov); err != nil {
		return err
	}
	report("batch %s %s", tenantID, prefix)
	return nil
}

// reached lists the steps a rotation may be at once step was reported committed.
var reached = map[string][]store.Step{
	"staged":      {store.StepStaged, store.StepValidated, store.StepFailed, store.StepCutover, store.StepConfirmed, store.StepRolledBack},
	"validated":   {store.StepValidated, store.StepFailed, store.StepCutover, store.StepConfirmed, store.StepRolledBack},
	"cutover":     {store.StepCutover, store.StepConfirmed, store.StepRolledBack},
	"confirmed":   {store.StepConfirmed},
	"rolled-back": {store.StepRolledBack, store.StepCutover},
	"failed":      {store.StepFailed},
}

// TestCrashAtRandomInstantsLosesNothingCommitted kills a child process that
// writes to the store with SIGKILL at random instants, at least 200 times,
// and after each kill checks integrity, every invariant, and that every
// write the child reported committed is there.
func TestCrashAtRandomInstantsLosesNothingCommitted(t *testing.T) {
	const kills, killsPerDir = 200, 25
	ctx := context.Background()
	var dir string
	for i := range kills {
		if i%killsPerDir == 0 {
			dir = t.TempDir() // a fresh folder now and then keeps each check small
		}
		lines := runAndKill(t, dir, rand.IntN(crashMaxLines))
		s, err := store.Open(dir, store.Options{})
		if err != nil {
			t.Fatalf("kill %d: reopen after crash: %v", i, err)
		}
		probs, err := s.Check(ctx, 0)
		if err != nil || len(probs) > 0 {
			s.Close()
			t.Fatalf("kill %d: check after crash: %v %+v", i, err, probs)
		}
		for _, l := range lines {
			verifyReported(t, s, i, l)
		}
		s.Close()
	}
}

// runAndKill starts the child, waits for n complete report lines (0: kill at
// once), kills it with SIGKILL and returns every complete line it wrote.
func runAndKill(t *testing.T, dir string, n int) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(out)
	var lines []string
	for len(lines) < n {
		l, err := rd.ReadString('\n')
		if err != nil {
			break // the child died: its error is on stderr, and Wait reports it below
		}
		lines = append(lines, strings.TrimSuffix(l, "\n"))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Lines written before the kill are still in the pipe. A line cut by the
	// kill has no newline: the child never finished reporting it, so it is dropped.
	for {
		l, err := rd.ReadString('\n')
		if err != nil {
			break
		}
		lines = append(lines, strings.TrimSuffix(l, "\n"))
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child ended on its own (%v) instead of being killed: a child error is printed above", err)
	}
	return lines
}

func verifyReported(t *testing.T, s *store.Store, kill int, line string) {
	t.Helper()
	ctx := context.Background()
	f := strings.Fields(line)
	switch {
	case len(f) == 3 && f[0] == "batch":
		devs, _, err := s.Devices(ctx, f[1], f[2], crashBatchSize+1)
		if err != nil {
			t.Fatalf("kill %d: %s: %v", kill, line, err)
		}
		n := 0
		for _, d := range devs {
			if strings.HasPrefix(d.Serial, f[2]) && len(d.Coverage) == 1 && d.CoverageState == "active" {
				n++
			}
		}
		if n != crashBatchSize {
			t.Fatalf("kill %d: reported %q but only %d of %d devices with coverage are stored", kill, line, n, crashBatchSize)
		}
	case len(f) == 3 && f[0] == "rot":
		r, err := s.Rotation(ctx, f[1])
		if err != nil {
			t.Fatalf("kill %d: reported %q: %v", kill, line, err)
		}
		for _, st := range reached[f[2]] {
			if r.Step == st {
				return
			}
		}
		t.Fatalf("kill %d: reported %q but the rotation is at %s", kill, line, r.Step)
	default:
		t.Fatalf("kill %d: unexpected child line %q", kill, line)
	}
}
