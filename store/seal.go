package store

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/rekeyd/rekey/platform"
)

// sealVersion is the first byte of every sealed blob: version || nonce || ciphertext.
const sealVersion = 1

// sealer seals private keys at rest with XChaCha20-Poly1305; the AAD is the
// credential id, so a sealed key copied onto another row does not open.
type sealer struct {
	key  []byte
	aead cipher.AEAD
}

func (k *sealer) seal(credID string, plaintext []byte) ([]byte, error) {
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, 1+chacha20poly1305.NonceSizeX+len(plaintext)+k.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("make nonce: %w", err)
	}
	return k.aead.Seal(out, out[1:], plaintext, []byte(credID)), nil
}

func (k *sealer) open(credID string, blob []byte) ([]byte, error) {
	n := chacha20poly1305.NonceSizeX
	if len(blob) < 1+n+k.aead.Overhead() || blob[0] != sealVersion {
		return nil, fmt.Errorf("sealed key of %s has an unknown format: %w", credID, ErrSealKey)
	}
	pt, err := k.aead.Open(nil, blob[1:1+n], blob[1+n:], []byte(credID))
	if err != nil {
		return nil, fmt.Errorf("sealed key of %s does not open with %s (was the file replaced?): %w", credID, SealKeyFile, ErrSealKey)
	}
	return pt, nil
}

// wipe zeroes the key bytes the store holds. The AEAD keeps its own expanded
// copy that Go gives no way to clear; it becomes garbage with the Store.
func (k *sealer) wipe() { clear(k.key) }

// loadSealer reads <dir>/seal.key, or creates it when it is missing and no
// sealed key exists yet (a new key could not open old ones).
func (s *Store) loadSealer(dir string) (*sealer, error) {
	path := filepath.Join(dir, SealKeyFile)
	key, err := readSealKey(path)
	if errors.Is(err, os.ErrNotExist) {
		var creds int
		qerr := s.w.QueryRowContext(context.Background(), `SELECT count(*) FROM credentials`).Scan(&creds)
		if qerr != nil {
			return nil, fmt.Errorf("count credentials: %w", mapErr(qerr))
		}
		if creds > 0 {
			return nil, fmt.Errorf("%w: %s is missing but the database holds %d credentials; restore %s from the same backup as %s: %w",
				ErrHalfState, path, creds, SealKeyFile, DBFile, ErrSealKey)
		}
		key, err = createSealKey(path)
	}
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("use sealing key: %w", err)
	}
	return &sealer{key: key, aead: aead}, nil
}

// readSealKey reads the key file after checking that it is a regular file,
// mode 0600 or stricter, of exactly 32 bytes.
func readSealKey(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscallNoFollow, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("open %s: %v: %w", path, err, ErrSealKey)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file; restore it from backup: %w", path, ErrSealKey)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("%s has mode %#o, wider than 0600; run chmod 600 on it after checking who read it: %w", path, fi.Mode().Perm(), ErrSealKey)
	case fi.Size() != chacha20poly1305.KeySize:
		return nil, fmt.Errorf("%s is %d bytes, expected %d; restore it from backup: %w", path, fi.Size(), chacha20poly1305.KeySize, ErrSealKey)
	}
	key := make([]byte, chacha20poly1305.KeySize)
	if _, err := io.ReadFull(f, key); err != nil {
		clear(key)
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return key, nil
}

// createSealKey writes a new random key to a temporary file (0600, fsynced)
// and hard-links it into place, which fails rather than replace a key another
// process created meanwhile; in that case the other key is used.
func createSealKey(path string) ([]byte, error) {
	key := make([]byte, chacha20poly1305.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate sealing key: %w", err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+SealKeyFile+".tmp-*")
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("create sealing key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(key)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, path)
		if errors.Is(err, os.ErrExist) {
			clear(key)
			return readSealKey(path)
		}
	}
	if err == nil {
		err = platform.SyncDir(dir)
	}
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("create sealing key %s: %w", path, err)
	}
	return key, nil
}
