package payload

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"filippo.io/age"
	"howett.net/plist"
)

const (
	testClientID = "BUSINESSAPI.9703f56c-10ce-4876-8f59-e78e5e23a152"
	testKeyID    = "d136aa66-0c3b-4bd4-9892-c20e8db024ab"
	testPass     = "correct horse battery staple"
	testWF       = 10
)

// newKeyPEM returns a fresh P-256 key as SEC1 PEM.
func newKeyPEM(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// sealed returns armored age text of a valid credential.
func sealed(t testing.TB, keyPEM []byte) []byte {
	t.Helper()
	ct, err := Seal(SealInput{Name: "Acme", ClientID: testClientID, KeyID: testKeyID, KeyPEM: keyPEM}, testPass, testWF)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// encryptPlist encrypts any plist value to testPass, binary age.
func encryptPlist(t testing.TB, v any) []byte {
	t.Helper()
	plain, err := plist.Marshal(v, plist.XMLFormat)
	if err != nil {
		t.Fatal(err)
	}
	return encryptRaw(t, plain, testWF)
}

func encryptRaw(t testing.TB, plain []byte, logN int) []byte {
	t.Helper()
	r, err := age.NewScryptRecipient(testPass)
	if err != nil {
		t.Fatal(err)
	}
	r.SetWorkFactor(logN)
	return encryptTo(t, plain, r)
}

func encryptTo(t testing.TB, plain []byte, r age.Recipient) []byte {
	t.Helper()
	var buf bytesBuffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.b
}

type bytesBuffer struct{ b []byte }

func (w *bytesBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// marshal encodes v as a plist in format.
func marshal(t testing.TB, v any, format int) []byte {
	t.Helper()
	b, err := plist.Marshal(v, format)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
