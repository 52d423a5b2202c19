// Package apitest provides a hand-written fake api.Backend with func fields
// and a helper that serves it on a real Unix socket, for tests of the API and
// of the CLI.
package apitest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

// Fake is an api.Backend whose behaviour is set per test through func
// fields; a nil field answers with an empty value. Events go through Hub.
type Fake struct {
	api.Hub
	StatusFunc      func(ctx context.Context) (api.Status, error)
	CredentialsFunc func(ctx context.Context) ([]store.Credential, error)
	TenantsFunc     func(ctx context.Context) ([]store.Tenant, error)
	ImportsFunc     func(ctx context.Context) ([]store.Import, error)
	ImportFunc      func(ctx context.Context, id string) (store.Import, error)
	RotationsFunc   func(ctx context.Context) ([]store.Rotation, error)
	DevicesFunc     func(ctx context.Context, tenantID string, q store.DeviceQuery) ([]store.Device, string, error)
	UnlockFunc      func(ctx context.Context, id string, req api.UnlockRequest) (store.Import, error)
	DismissFunc     func(ctx context.Context, id string) (store.Import, error)
	RollbackFunc    func(ctx context.Context, tenantID string) error
	SyncFunc        func(ctx context.Context, tenantID string) error
	RotateFunc      func(ctx context.Context, tenantID string, req api.CredentialRequest) (api.RotationAnswer, error)
	AddFunc         func(ctx context.Context, req api.CredentialRequest) (api.AddAnswer, error)
	CheckFunc       func(ctx context.Context, credentialID string) (api.CheckAnswer, error)
	RetryFunc       func(ctx context.Context, id string) (store.Import, error)
}

var _ api.Backend = (*Fake)(nil)

func (f *Fake) Status(ctx context.Context) (api.Status, error) {
	if f.StatusFunc == nil {
		return api.Status{}, nil
	}
	return f.StatusFunc(ctx)
}

func (f *Fake) Credentials(ctx context.Context) ([]store.Credential, error) {
	if f.CredentialsFunc == nil {
		return nil, nil
	}
	return f.CredentialsFunc(ctx)
}

func (f *Fake) Tenants(ctx context.Context) ([]store.Tenant, error) {
	if f.TenantsFunc == nil {
		return nil, nil
	}
	return f.TenantsFunc(ctx)
}

func (f *Fake) Imports(ctx context.Context) ([]store.Import, error) {
	if f.ImportsFunc == nil {
		return nil, nil
	}
	return f.ImportsFunc(ctx)
}

func (f *Fake) Import(ctx context.Context, id string) (store.Import, error) {
	if f.ImportFunc == nil {
		return store.Import{}, store.ErrNotFound
	}
	return f.ImportFunc(ctx, id)
}

func (f *Fake) Rotations(ctx context.Context) ([]store.Rotation, error) {
	if f.RotationsFunc == nil {
		return nil, nil
	}
	return f.RotationsFunc(ctx)
}

func (f *Fake) Devices(ctx context.Context, tenantID string, q store.DeviceQuery) ([]store.Device, string, error) {
	if f.DevicesFunc == nil {
		return nil, "", nil
	}
	return f.DevicesFunc(ctx, tenantID, q)
}

func (f *Fake) Unlock(ctx context.Context, id string, req api.UnlockRequest) (store.Import, error) {
	if f.UnlockFunc == nil {
		return store.Import{}, store.ErrNotFound
	}
	return f.UnlockFunc(ctx, id, req)
}

func (f *Fake) Dismiss(ctx context.Context, id string) (store.Import, error) {
	if f.DismissFunc == nil {
		return store.Import{}, store.ErrNotFound
	}
	return f.DismissFunc(ctx, id)
}

func (f *Fake) Rollback(ctx context.Context, tenantID string) error {
	if f.RollbackFunc == nil {
		return store.ErrNotFound
	}
	return f.RollbackFunc(ctx, tenantID)
}

func (f *Fake) Sync(ctx context.Context, tenantID string) error {
	if f.SyncFunc == nil {
		return store.ErrNotFound
	}
	return f.SyncFunc(ctx, tenantID)
}

func (f *Fake) Rotate(ctx context.Context, tenantID string, req api.CredentialRequest) (api.RotationAnswer, error) {
	if f.RotateFunc == nil {
		return api.RotationAnswer{}, store.ErrNotFound
	}
	return f.RotateFunc(ctx, tenantID, req)
}

func (f *Fake) Add(ctx context.Context, req api.CredentialRequest) (api.AddAnswer, error) {
	if f.AddFunc == nil {
		return api.AddAnswer{}, api.ErrInvalid
	}
	return f.AddFunc(ctx, req)
}

func (f *Fake) Check(ctx context.Context, credentialID string) (api.CheckAnswer, error) {
	if f.CheckFunc == nil {
		return api.CheckAnswer{}, store.ErrNotFound
	}
	return f.CheckFunc(ctx, credentialID)
}

func (f *Fake) Retry(ctx context.Context, id string) (store.Import, error) {
	if f.RetryFunc == nil {
		return store.Import{}, store.ErrNotFound
	}
	return f.RetryFunc(ctx, id)
}

// ShortTempDir makes a folder with a short path (Unix socket paths are
// limited to about 104 bytes) that is removed when the test ends.
func ShortTempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "rk")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Serve serves cfg on a fresh socket in a short temporary folder and returns
// the socket path and the server; it shuts down when the test ends.
func Serve(tb testing.TB, cfg api.Config) (string, *api.Server) {
	tb.Helper()
	path := filepath.Join(ShortTempDir(tb), "rekey.sock")
	l, err := api.Listen(path)
	if err != nil {
		tb.Fatal(err)
	}
	srv := api.New(cfg)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			tb.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	return path, srv
}

// WaitSubscribers polls until n event streams are subscribed, failing tb
// after 10 s. A client's subscription arrives through the OS, so there is
// nothing to wait on but the count itself.
func (f *Fake) WaitSubscribers(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.Subscribers() != n {
		if time.Now().After(deadline) {
			tb.Fatalf("%d event subscribers, want %d", f.Subscribers(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
