package payload

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func pemOf(t *testing.T, typ string, der []byte, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParsePrivateKeyAcceptsSEC1AndPKCS8UnderAnyHeader(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, err1 := x509.MarshalECPrivateKey(k)
	p8, err2 := x509.MarshalPKCS8PrivateKey(k)
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}})
	cases := map[string][]byte{
		"SEC1":                      pemOf(t, "EC PRIVATE KEY", sec1, err1),
		"PKCS8":                     pemOf(t, "PRIVATE KEY", p8, err2),
		"PKCS8 under EC header":     pemOf(t, "EC PRIVATE KEY", p8, err2),
		"SEC1 under PKCS8 header":   pemOf(t, "PRIVATE KEY", sec1, err1),
		"SEC1 after EC PARAMETERS":  append(params, pemOf(t, "EC PRIVATE KEY", sec1, err1)...),
		"CRLF and surrounding text": []byte("Apple key\r\n" + strings.ReplaceAll(string(pemOf(t, "PRIVATE KEY", p8, err2)), "\n", "\r\n")),
	}
	for name, text := range cases {
		got, err := ParsePrivateKey(text)
		if err != nil || !got.Equal(k) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestParsePrivateKeyRefusals(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p8 := func(k any) ([]byte, error) { return x509.MarshalPKCS8PrivateKey(k) }
	rsaP8, e1 := p8(rk)
	edP8, e2 := p8(ek)
	p384sec1, e3 := x509.MarshalECPrivateKey(p384)
	p384p8, e4 := p8(p384)
	tests := []struct {
		name string
		text []byte
		want error
		says string
	}{
		{"empty", nil, ErrKeyEmpty, "empty"},
		{"whitespace", []byte(" \n\t"), ErrKeyEmpty, "empty"},
		{"garbage", []byte("not a key at all"), ErrKeyNotPEM, "no PEM private key block"},
		{"garbage in PEM", pemOf(t, "PRIVATE KEY", []byte("junkjunkjunk"), nil), ErrKeyNotPEM, "neither a SEC1 nor a PKCS#8"},
		{"RSA PKCS1", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk), nil), ErrKeyType, "RSA"},
		{"RSA PKCS8", pemOf(t, "PRIVATE KEY", rsaP8, e1), ErrKeyType, "RSA"},
		{"RSA PKCS1 under EC header", pemOf(t, "EC PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk), nil), ErrKeyType, "RSA"},
		{"Ed25519", pemOf(t, "PRIVATE KEY", edP8, e2), ErrKeyType, "Ed25519"},
		{"P-384 SEC1", pemOf(t, "EC PRIVATE KEY", p384sec1, e3), ErrKeyCurve, "P-384"},
		{"P-384 PKCS8", pemOf(t, "PRIVATE KEY", p384p8, e4), ErrKeyCurve, "P-384"},
		{"encrypted PKCS8", pemOf(t, "ENCRYPTED PRIVATE KEY", []byte("x"), nil), ErrKeyEncrypted, "password-protected"},
		{"encrypted legacy", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte("x")}), ErrKeyEncrypted, "password-protected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePrivateKey(tt.text)
			if k != nil || !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), "fix:") {
				t.Fatalf("got %v, want %v saying %q", err, tt.want, tt.says)
			}
			assertNoSecret(t, err, nil, tt.text, nil)
		})
	}
}
