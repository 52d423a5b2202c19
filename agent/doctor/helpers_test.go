package doctor_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/google/uuid"
	"github.com/rekeyd/rekey/store"
)

func newCred(name string) store.NewCredential {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(priv)
	return store.NewCredential{Name: name, ClientID: "BUSINESSAPI." + uuid.NewString(), KeyID: uuid.NewString(),
		Scope: "business.api", KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), Origin: store.OriginLocal}
}

func addCredential(t *testing.T, s *store.Store) store.Tenant {
	t.Helper()
	ten, _, _, err := s.AddCredential(context.Background(), newCred("first"), "Tenant")
	if err != nil {
		t.Fatal(err)
	}
	return ten
}
