package payload

import (
	"fmt"
	"testing"

	"howett.net/plist"
)

// BenchmarkDecrypt measures one decryption (scrypt derivation, age, plist and
// key parsing) at each work factor a payload may carry.
func BenchmarkDecrypt(b *testing.B) {
	key := newKeyPEM(b)
	for _, logN := range []int{10, 12, 14, 16, 18} {
		ct, err := Seal(SealInput{Name: "Acme", ClientID: testClientID, KeyID: testKeyID, KeyPEM: key}, testPass, logN)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("workfactor=%d", logN), func(b *testing.B) {
			for b.Loop() {
				c, err := Decrypt(ct, []string{testPass}, DefaultWorkFactor)
				if err != nil {
					b.Fatal(err)
				}
				c.Wipe()
			}
		})
	}
}

// BenchmarkDecryptOverCap: a hostile payload claiming work factor 30 (a
// terabyte of scrypt memory) is refused from its header alone.
func BenchmarkDecryptOverCap(b *testing.B) {
	ct := overCap(b, "30")
	for b.Loop() {
		if _, err := Decrypt(ct, []string{testPass}, DefaultWorkFactor); err == nil {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkParse reads a binary payload with 1 and with 100 entries.
func BenchmarkParse(b *testing.B) {
	ct := string(sealed(b, newKeyPEM(b)))
	for _, n := range []int{1, 100} {
		list := make([]any, n)
		for i := range list {
			list[i] = entry(fmt.Sprintf("Credential %d", i), ct, KeyImportID, fmt.Sprint(i))
		}
		data := marshal(b, doc(list...), plist.BinaryFormat)
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := Parse(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
