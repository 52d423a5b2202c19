package doctor_test

import (
	"os"
	"testing"

	"github.com/rekeyd/rekey/agent/doctor"
)

// The agent narrows a state folder others may only read, and refuses one
// they may write (platform.PrepareStateDir); doctor says the same.
func TestStateDirModeFindingsMatchWhatTheAgentDoes(t *testing.T) {
	for mode, want := range map[os.FileMode]doctor.Level{0o700: doctor.OK, 0o750: doctor.Warn, 0o770: doctor.Fail, 0o757: doctor.Fail} {
		e := newEndpoint(t)
		if err := os.Mkdir(e.state, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(e.state, mode); err != nil {
			t.Fatal(err)
		}
		fs := doctor.StateDir(e.state, []int{os.Geteuid()})
		rank := map[doctor.Level]int{doctor.OK: 0, doctor.Warn: 1, doctor.Fail: 2}
		worst := doctor.OK
		for _, f := range fs {
			if f.Check == "state-folder" && rank[f.Level] > rank[worst] {
				worst = f.Level
			}
		}
		if worst != want {
			t.Errorf("state folder mode %04o: findings %+v, want level %s", mode, fs, want)
		}
	}
}
