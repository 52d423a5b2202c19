package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// The crash tests run the agent in a child process (this test binary,
// re-executed) that kills itself with SIGKILL at one recorded step. The
// environment tells the child where the harness's folders are.
const (
	envCrashPoint = "REKEY_TEST_CRASH_POINT"
	envCrashPrefs = "REKEY_TEST_CRASH_PREFS"
	envCrashState = "REKEY_TEST_CRASH_STATE"
	envCrashPass  = "REKEY_TEST_CRASH_PASSPHRASE"
)

func TestMain(m *testing.M) {
	if point := os.Getenv(envCrashPoint); point != "" {
		os.Exit(crashChild(point))
	}
	if tenant := os.Getenv(envSyncKillTenant); tenant != "" {
		os.Exit(syncKillChild(tenant))
	}
	if os.Getenv(envSecondAgent) != "" {
		os.Exit(secondAgentChild())
	}
	if os.Getenv(envFloodAgent) != "" {
		os.Exit(floodAgentChild())
	}
	if sock := os.Getenv(envFlooder); sock != "" {
		os.Exit(flooderChild(sock))
	}
	if sock := os.Getenv(envFloorSocket); sock != "" {
		os.Exit(floorServerChild(sock))
	}
	os.Exit(m.Run())
}

// crashChild runs an agent on the parent's folders until it reaches point,
// where it dies at once, as on a power loss. Reaching the end means the
// point was never hit: exit status 3.
func crashChild(point string) int {
	agent.SetCrashHook(func(p string) {
		if p == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	})
	a, err := agent.New(agent.Config{AppleRequestsPerMinute: 1e9,
		PrefsDir: os.Getenv(envCrashPrefs), StateDir: os.Getenv(envCrashState), PassphraseFile: os.Getenv(envCrashPass),
		Debounce: 10 * time.Millisecond, Settle: 50 * time.Millisecond, Version: "crash-child",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = a.Run(ctx)
	fmt.Fprintf(os.Stderr, "crash child: point %q never reached (run: %v)\n", point, err)
	return 3
}

// crashCase is one crash point: what the import does, and what the store
// must hold at the instant of the crash (proving where the child died).
// Joined steps (docs/store.md) have no point between them: an update is
// staged in the transaction that moves its import to applying, and is
// validated in the transaction that cuts it over (all three in one with
// the auth check off).
type crashCase struct {
	name      string
	point     string
	add       bool              // the import adds a tenant; else it updates Acme
	rotStep   store.Step        // the rotation's step at the crash; "" = no rotation yet
	impState  store.ImportState // the import's state at the crash
	failedRot bool              // recovery fails the rotation cleanly and the import is retried
	authOff   bool              // the payload turns the auth check off
	// validated: no child; the store is left with the update validated and
	// not cut over, as an agent that recorded the two steps apart leaves it.
	validated bool
}

var crashCases = []crashCase{
	{name: "add-applying", point: "import.applying", add: true, impState: store.ImportApplying},
	{name: "add-committed", point: "add.committed", add: true, impState: store.ImportApplied},
	{name: "staged", point: string(store.EvRotationStaged), rotStep: store.StepStaged, impState: store.ImportApplying, failedRot: true},
	{name: "validated", rotStep: store.StepValidated, impState: store.ImportApplying, validated: true},
	{name: "cutover", point: string(store.EvRotationCutover), rotStep: store.StepCutover, impState: store.ImportApplied},
	{name: "cutover-auth-off", point: string(store.EvRotationCutover), rotStep: store.StepCutover, impState: store.ImportApplied, authOff: true},
	{name: "confirmed", point: string(store.EvRotationConfirmed), rotStep: store.StepConfirmed, impState: store.ImportApplied},
}

func TestCrashAtEveryRecordedStep(t *testing.T) {
	for _, tc := range crashCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each case has its own folders, child and fake Apple
			crashAndRecover(t, tc)
		})
	}
}

func crashAndRecover(t *testing.T, tc crashCase) {
	ctx := context.Background()
	h := newHarness(t)
	acme := h.key("")
	first := withID("acme", h.entry("Acme", payload.IntentAdd, "", acme, testPassphrase))
	h.push(first)
	h.untilImport("acme", store.ImportApplied)
	h.waitFor("first sync", func(e store.Event) bool { return e.Kind == store.EvSyncFinished })
	tenant := h.active("")
	devices, coverage, err := h.agent.Store().Counts(ctx, tenant.TenantID)
	if err != nil || devices == 0 || coverage == 0 {
		t.Fatalf("tenant data before the crash: %d devices, %d coverage, %v", devices, coverage, err)
	}
	h.stop()

	next := h.key(acme.ClientID)
	entry := withID("next", h.entry("Acme", payload.IntentUpdate, "acme", next, testPassphrase))
	if tc.add {
		next = h.key("")
		entry = withID("next", h.entry("Beta", payload.IntentAdd, "", next, testPassphrase))
	}
	if tc.authOff {
		h.settings[payload.KeyAuthCheck] = payload.AuthOff
	}
	h.push(first, entry)
	if tc.validated {
		h.leaveValidated(entry, "next", tenant.TenantID)
	} else {
		h.runCrashChild(tc.point)
	}

	// The store as the crash left it: consistent, and stopped where expected.
	st, err := store.Open(h.state, store.Options{})
	if err != nil {
		t.Fatalf("open the store after the crash: %v", err)
	}
	checkConsistent(t, st, tenant.TenantID, devices, coverage)
	if imp, err := st.Import(ctx, "next"); err != nil || imp.State != tc.impState {
		t.Fatalf("import at the crash: %+v, %v; want %s", imp, err, tc.impState)
	}
	if got := rotationsOf(t, st, "next"); tc.rotStep == "" && len(got) != 0 || tc.rotStep != "" && (len(got) != 1 || got[0].Step != tc.rotStep) {
		t.Fatalf("rotations at the crash: %+v; want step %q", got, tc.rotStep)
	}
	st.Close()

	h.start()
	imp := h.untilImport("next", store.ImportApplied)
	st = h.agent.Store()
	checkConsistent(t, st, tenant.TenantID, devices, coverage)
	want := 1
	if tc.add {
		want = 2
	}
	if n := len(h.tenants()); n != want {
		t.Fatalf("%d tenants after recovery, want %d", n, want)
	}
	if got := h.active(imp.TenantID); got.KeyID != next.KeyID {
		t.Fatalf("active after recovery: %+v; want the new key", got)
	}
	if tc.add && h.active(tenant.TenantID).KeyID != acme.KeyID {
		t.Fatalf("an add changed the other tenant's credential")
	}
	live := 0
	for _, c := range h.creds() {
		if c.ImportID == "next" && c.State != store.CredFailed {
			live++
		}
		if c.State == store.CredFailed && c.HasKey {
			t.Fatalf("failed credential %s still holds its key", c.ID)
		}
	}
	if live != 1 {
		t.Fatalf("import next left %d live credentials; it must be applied exactly once", live)
	}
	rots := rotationsOf(t, st, "next")
	switch {
	case tc.add:
		if len(rots) != 0 {
			t.Fatalf("an add made rotations: %+v", rots)
		}
	case tc.failedRot:
		if len(rots) != 2 || rots[0].Step != store.StepFailed || rots[1].Step == store.StepFailed {
			t.Fatalf("rotations after a crash at staged: %+v; want the first failed, the retry cut over", rots)
		}
		if c, err := st.Credential(ctx, rots[0].ToCredentialID); err != nil || c.State != store.CredFailed || c.HasKey {
			t.Fatalf("the interrupted pending credential: %+v, %v; want failed with its key wiped", c, err)
		}
	default:
		if len(rots) != 1 || rots[0].Step.Unfinished() || rots[0].Step == store.StepFailed {
			t.Fatalf("rotations after recovery: %+v; want one, cut over", rots)
		}
	}
	if resumed := hasEvent(t, st, store.EvRotationResumed, "next"); resumed != (tc.rotStep == store.StepValidated) {
		t.Fatalf("rotation resumed at cut-over: %v; want it only after a crash at validated", resumed)
	}
	h.healthy()
}

// leaveValidated records import id of entry and its rotation up to
// validated straight in the store, with no agent running.
func (h *harness) leaveValidated(entry payload.PayloadEntry, id, tenantID string) {
	h.t.Helper()
	ctx := context.Background()
	doc, err := payload.MarshalPayload([]payload.PayloadEntry{entry}, h.settings)
	if err != nil {
		h.t.Fatal(err)
	}
	parsed, err := payload.Parse(doc)
	if err != nil || len(parsed.Entries) != 1 {
		h.t.Fatalf("parse the entry: %v", err)
	}
	cred, err := payload.Decrypt(entry.Ciphertext, []string{testPassphrase}, 10)
	if err != nil {
		h.t.Fatalf("decrypt the entry: %v", err)
	}
	st, err := store.Open(h.state, store.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	defer st.Close()
	if _, _, err := st.RecordImport(ctx, store.Import{ID: id, Hash: parsed.Entries[0].Hash, Source: h.payloadPath(), Name: entry.Name}); err != nil {
		h.t.Fatal(err)
	}
	rot, _, _, err := st.Stage(ctx, tenantID, store.NewCredential{Name: entry.Name, ClientID: cred.ClientID, KeyID: cred.KeyID,
		Scope: cred.Scope, KeyPEM: cred.PEM, Origin: store.OriginManaged, ImportID: id})
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := st.Validated(ctx, rot.ID); err != nil {
		h.t.Fatal(err)
	}
}

// runCrashChild runs the agent in a child process until it kills itself at point.
func (h *harness) runCrashChild(point string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashPoint+"="+point, envCrashPrefs+"="+h.prefs,
		envCrashState+"="+h.state, envCrashPass+"="+h.pass)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ctx.Err() != nil {
		h.t.Fatalf("crash child at %s: %v (timed out: %v)\n%s", point, err, ctx.Err() != nil, out.String())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		h.t.Fatalf("crash child at %s did not die by SIGKILL: %v\n%s", point, err, out.String())
	}
}

// checkConsistent asserts the crash guarantees of docs/store.md on st: one active
// credential per tenant, no record lost, every unfinished rotation resumable.
func checkConsistent(t *testing.T, st *store.Store, tenantID string, devices, coverage int) {
	t.Helper()
	ctx := context.Background()
	if problems, err := st.Check(ctx, time.Hour); err != nil || len(problems) > 0 {
		t.Fatalf("store check: %v %+v", err, problems)
	}
	creds, err := st.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	active := map[string]int{}
	for _, c := range creds {
		if c.State == store.CredActive {
			active[c.TenantID]++
		}
	}
	tenants, err := st.Tenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ten := range tenants {
		if active[ten.ID] != 1 {
			t.Fatalf("tenant %s has %d active credentials", ten.ID, active[ten.ID])
		}
	}
	d, c, err := st.Counts(ctx, tenantID)
	if err != nil || d != devices || c != coverage {
		t.Fatalf("tenant records: %d devices, %d coverage (%v); before: %d, %d", d, c, err, devices, coverage)
	}
}

// rotationsOf lists the rotations of import id, oldest first.
func rotationsOf(t *testing.T, st *store.Store, id string) []store.Rotation {
	t.Helper()
	all, err := st.Rotations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Rotation
	for _, r := range all {
		if r.ImportID == id {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b store.Rotation) int { return a.StartedAt.Compare(b.StartedAt) })
	return out
}

// hasEvent reports whether the audit log holds an event of kind for import id.
func hasEvent(t *testing.T, st *store.Store, kind store.EventKind, id string) bool {
	t.Helper()
	evs, err := st.Events(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(evs, func(e store.Event) bool { return e.Kind == kind && e.ImportID == id })
}
