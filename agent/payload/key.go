package payload

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
)

// ParsePrivateKey reads an EC P-256 private key from PEM text, as SEC1 or
// PKCS#8 whatever the PEM header says (Apple's "EC PRIVATE KEY" downloads have
// been seen holding PKCS#8). An "EC PARAMETERS" block before the key, as
// openssl ecparam writes, is skipped. Errors wrap ErrKeyEmpty, ErrKeyNotPEM,
// ErrKeyEncrypted, ErrKeyType or ErrKeyCurve and never hold key bytes.
func ParsePrivateKey(pemText []byte) (*ecdsa.PrivateKey, error) {
	if len(bytes.TrimSpace(pemText)) == 0 {
		return nil, fmt.Errorf("%w; fix: give the .p8/.pem file downloaded from Apple Business or School Manager", ErrKeyEmpty)
	}
	block, err := keyBlock(pemText)
	if err != nil {
		return nil, err
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
		return nil, fmt.Errorf("%w; fix: remove the key's own password first ('openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8'); the age passphrase protects it", ErrKeyEncrypted)
	}
	if block.Type == "RSA PRIVATE KEY" || block.Type == "OPENSSH PRIVATE KEY" || block.Type == "DSA PRIVATE KEY" {
		return nil, keyTypeError(strings.TrimSuffix(block.Type, " PRIVATE KEY"))
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return checkCurve(k)
	} else if strings.Contains(err.Error(), "unknown elliptic curve") {
		return nil, curveError("an unsupported curve")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if strings.Contains(err.Error(), "unknown elliptic curve") {
			return nil, curveError("an unsupported curve")
		}
		if _, rerr := x509.ParsePKCS1PrivateKey(block.Bytes); rerr == nil {
			return nil, keyTypeError("RSA")
		}
		return nil, fmt.Errorf("%w: the %q block holds neither a SEC1 nor a PKCS#8 key; fix: give the key file downloaded from Apple unchanged", ErrKeyNotPEM, clip(block.Type))
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return checkCurve(k)
	case *rsa.PrivateKey:
		return nil, keyTypeError("RSA")
	case ed25519.PrivateKey:
		return nil, keyTypeError("Ed25519")
	default:
		return nil, keyTypeError(fmt.Sprintf("%T", k))
	}
}

// keyBlock returns the first PEM block that is not EC PARAMETERS.
func keyBlock(text []byte) (*pem.Block, error) {
	rest := text
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%w: no PEM private key block found; fix: give the PEM text that starts with -----BEGIN ... PRIVATE KEY-----", ErrKeyNotPEM)
		}
		if block.Type != "EC PARAMETERS" {
			return block, nil
		}
		rest = r
	}
}

func checkCurve(k *ecdsa.PrivateKey) (*ecdsa.PrivateKey, error) {
	if k.Curve != elliptic.P256() {
		return nil, curveError(k.Curve.Params().Name)
	}
	return k, nil
}

func keyTypeError(kind string) error {
	return fmt.Errorf("%w: found a %s key; fix: use the EC P-256 key Apple Business or School Manager generated for this API account", ErrKeyType, kind)
}

func curveError(curve string) error {
	return fmt.Errorf("%w: found an EC key on %s; fix: use the EC P-256 key Apple generated for this API account", ErrKeyCurve, curve)
}

// EncodePKCS8 returns key as normalised PKCS#8 PEM ("PRIVATE KEY").
func EncodePKCS8(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)
	return out, nil
}
