package soak

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/google/uuid"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
	"howett.net/plist"
)

// change is one kind of payload change the soak pushes.
type change string

const (
	chAdd       change = "add"            // a new credential, intent add
	chUpdate    change = "update"         // a new key for a known Client ID (update or auto)
	chWrongPass change = "wrong-password" // sealed with a passphrase the agent does not have
	chBadKey    change = "bad-key"        // RSA or P-384 key, sealed with age directly
	chConflict  change = "conflict"       // a known ImportID with new content
	chReturn    change = "return"         // an entry that left the payload comes back unchanged
	chRewrite   change = "rewrite"        // the same bytes written again
	chRemove    change = "remove"         // the profile is removed
)

// otherPassphrase seals the wrong-password entries; a UI unlocks them with it.
const otherPassphrase = "not the fleet passphrase"

// mix is how often each change is picked, out of its total.
var mix = []struct {
	c change
	w int
}{{chAdd, 14}, {chUpdate, 30}, {chWrongPass, 8}, {chBadKey, 8}, {chConflict, 5}, {chReturn, 8}, {chRewrite, 15}, {chRemove, 7}}

// window is how many entries the payload keeps; older ones leave it.
const window = 10

// world is the MDM side of the soak: the fake Apple, the credentials it
// knows, and the payload file the agent watches.
type world struct {
	t        testing.TB
	rng      *mrand.Rand
	l        layout
	apple    *appletest.Server
	settings map[string]string
	entries  []payload.PayloadEntry // the payload's entries, oldest first
	gone     []payload.PayloadEntry // entries that left the window
	clients  []string               // Client IDs of credentials pushed with intent add
	present  bool
	seq      int
	rsaPEM   []byte
	pushed   map[change]int
	locked   map[string]bool // ImportIDs sealed with otherPassphrase
}

func newWorld(t testing.TB, l layout, seed uint64) *world {
	t.Helper()
	ap := appletest.New()
	t.Cleanup(ap.Close)
	ap.SetDevices(10)
	return &world{t: t, rng: mrand.New(mrand.NewPCG(seed, seed^0x5eed)), l: l, apple: ap,
		settings: map[string]string{payload.KeyTokenURL: ap.TokenURL(), payload.KeyAPIBaseURL: ap.APIBaseURL()},
		pushed:   map[change]int{}, locked: map[string]bool{}}
}

// key makes a P-256 credential registered with the fake Apple; with a Client
// ID it becomes that client's registered key.
func (w *world) key(clientID string) appletest.Key {
	w.t.Helper()
	k, err := appletest.GenerateKey(clientID)
	if err != nil {
		w.t.Fatal(err)
	}
	w.apple.RegisterCredential(k.ClientID, k.KeyID, &k.Private.PublicKey)
	return k
}

func (w *world) seal(name string, k appletest.Key, pass string) []byte {
	w.t.Helper()
	ct, err := payload.Seal(payload.SealInput{Name: name, ClientID: k.ClientID, KeyID: k.KeyID, KeyPEM: k.PEM}, pass, 10)
	if err != nil {
		w.t.Fatalf("seal: %v", err)
	}
	return ct
}

// sealRaw encrypts a credential plist with age itself, bypassing rekey
// seal's key checks, the way an admin with the age tool could.
func (w *world) sealRaw(keyPEM []byte) []byte {
	w.t.Helper()
	plain, err := plist.Marshal(map[string]any{payload.KeyClientID: apple.ClientIDPrefixBusiness + uuid.NewString(),
		payload.KeyKeyID: uuid.NewString(), payload.KeyPrivateKey: string(keyPEM)}, plist.XMLFormat)
	if err != nil {
		w.t.Fatal(err)
	}
	r, err := age.NewScryptRecipient(testPassphrase)
	if err != nil {
		w.t.Fatal(err)
	}
	r.SetWorkFactor(10)
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	ew, err := age.Encrypt(aw, r)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := ew.Write(plain); err != nil {
		w.t.Fatal(err)
	}
	if err := ew.Close(); err != nil {
		w.t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		w.t.Fatal(err)
	}
	return buf.Bytes()
}

// badKeyPEM is an RSA key (made once: RSA is slow to generate) or a P-384
// key: both refused after decryption.
func (w *world) badKeyPEM() []byte {
	if w.rng.IntN(2) == 0 {
		if w.rsaPEM == nil {
			rk, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				w.t.Fatal(err)
			}
			der, _ := x509.MarshalPKCS8PrivateKey(rk)
			w.rsaPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		}
		return w.rsaPEM
	}
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		w.t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func (w *world) pick() change {
	total := 0
	for _, m := range mix {
		total += m.w
	}
	n := w.rng.IntN(total)
	for _, m := range mix {
		if n < m.w {
			return m.c
		}
		n -= m.w
	}
	panic("unreachable")
}

// step makes one random change to the payload and writes it. It returns the
// change and, when the change carries a new ImportID the agent must record,
// that ImportID and the event kind that records it.
func (w *world) step() (c change, importID string, kind store.EventKind) {
	w.t.Helper()
	c = w.pick()
	if (c == chUpdate && len(w.clients) == 0) || (c == chConflict && len(w.entries) == 0) || (c == chReturn && len(w.gone) == 0) {
		c = chAdd
	}
	w.seq++
	id := fmt.Sprintf("soak-%06d", w.seq)
	name := fmt.Sprintf("cred %d", w.seq)
	switch c {
	case chAdd:
		k := w.key("")
		w.clients = append(w.clients, k.ClientID)
		w.append(payload.PayloadEntry{ImportID: id, Intent: payload.IntentAdd, Name: name, Ciphertext: w.seal(name, k, testPassphrase)})
		importID, kind = id, store.EvImportRecorded
	case chUpdate:
		client := w.clients[w.rng.IntN(len(w.clients))]
		e := payload.PayloadEntry{ImportID: id, Name: name, Ciphertext: w.seal(name, w.key(client), testPassphrase)}
		switch w.rng.IntN(3) {
		case 0:
			e.Intent, e.Target = payload.IntentUpdate, client
		case 1:
			e.Intent = payload.IntentUpdate
		default:
			e.Intent = payload.IntentAuto
		}
		w.append(e)
		importID, kind = id, store.EvImportRecorded
	case chWrongPass:
		w.append(payload.PayloadEntry{ImportID: id, Intent: payload.IntentAdd, Name: name, Ciphertext: w.seal(name, w.key(""), otherPassphrase)})
		w.locked[id] = true
		importID, kind = id, store.EvImportRecorded
	case chBadKey:
		w.append(payload.PayloadEntry{ImportID: id, Intent: payload.IntentAdd, Name: name, Ciphertext: w.sealRaw(w.badKeyPEM())})
		importID, kind = id, store.EvImportRecorded
	case chConflict:
		i := w.rng.IntN(len(w.entries))
		old := w.entries[i]
		delete(w.locked, old.ImportID)
		w.entries[i] = payload.PayloadEntry{ImportID: old.ImportID, Intent: payload.IntentAdd, Name: name, Ciphertext: w.seal(name, w.key(""), testPassphrase)}
		importID, kind = old.ImportID, store.EvImportConflict
	case chReturn:
		i := w.rng.IntN(len(w.gone))
		e := w.gone[i]
		w.gone = append(w.gone[:i], w.gone[i+1:]...)
		w.append(e)
	case chRemove:
		w.remove()
		return c, "", ""
	}
	w.write()
	w.pushed[c]++
	return c, importID, kind
}

// append adds e to the payload, moving the oldest entry out past the window.
func (w *world) append(e payload.PayloadEntry) {
	w.entries = append(w.entries, e)
	if len(w.entries) > window {
		w.gone = append(w.gone, w.entries[0])
		w.entries = w.entries[1:]
		if len(w.gone) > 4*window {
			w.gone = w.gone[1:]
		}
	}
}

// write puts the payload in place the way an MDM agent does: a new file
// renamed over the old one. A rewrite of unchanged entries writes the same bytes.
func (w *world) write() {
	w.t.Helper()
	doc, err := payload.MarshalPayload(w.entries, w.settings)
	if err != nil {
		w.t.Fatalf("marshal payload: %v", err)
	}
	if err := platform.WriteFileAtomic(platform.PrefsFile(w.l.prefs, platform.Domain), doc, 0o644); err != nil {
		w.t.Fatalf("write payload: %v", err)
	}
	w.present = true
}

// remove takes the profile away; the next change brings it back.
func (w *world) remove() {
	w.t.Helper()
	w.pushed[chRemove]++
	if !w.present {
		return
	}
	if err := os.Remove(platform.PrefsFile(w.l.prefs, platform.Domain)); err != nil {
		w.t.Fatalf("remove payload: %v", err)
	}
	w.present = false
}

// lockedEntry returns a wrong-password entry in the payload, if any.
func (w *world) lockedEntry() (string, bool) {
	var ids []string
	for _, e := range w.entries {
		if w.locked[e.ImportID] {
			ids = append(ids, e.ImportID)
		}
	}
	if len(ids) == 0 {
		return "", false
	}
	return ids[w.rng.IntN(len(ids))], true
}

// total is the number of changes pushed.
func (w *world) total() int {
	n := 0
	for _, v := range w.pushed {
		n += v
	}
	return n
}
