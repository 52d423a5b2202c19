package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/rekeyd/rekey/store"
)

func TestTenantKeepsTheEndpointsItWasAddedWith(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	nc := newCred("Private")
	nc.TokenURL, nc.APIBaseURL = "https://token.example.test/t", "https://api.example.test"
	ten, _, _, err := s.AddCredential(ctx, nc, "")
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := addTenant(t, s, "Apple's")
	s.Close()
	s, err = store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Tenant(ctx, ten.ID)
	if err != nil || got.TokenURL != nc.TokenURL || got.APIBaseURL != nc.APIBaseURL {
		t.Fatalf("tenant after reopening: %+v, %v; want the add's endpoints", got, err)
	}
	if got, _ := s.Tenant(ctx, plain.ID); got.TokenURL != "" || got.APIBaseURL != "" {
		t.Errorf("a tenant added without endpoints records %q %q, want empty (Apple's)", got.TokenURL, got.APIBaseURL)
	}
	if err := s.SetEndpoints(ctx, plain.ID, "https://t2.example.test", ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Tenant(ctx, plain.ID); got.TokenURL != "https://t2.example.test" || got.APIBaseURL != "" {
		t.Errorf("after SetEndpoints: %q %q", got.TokenURL, got.APIBaseURL)
	}
	if err := s.SetEndpoints(ctx, "ten_missing", "", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetEndpoints of a missing tenant: %v, want ErrNotFound", err)
	}
}
