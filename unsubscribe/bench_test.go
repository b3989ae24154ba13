package unsubscribe

import (
	"strconv"
	"testing"
)

// BenchmarkMint is the cost delivery pays per member copy.
func BenchmarkMint(b *testing.B) {
	kr := fixedKeyring(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Mint("announce@lists.example.org", "alice.member@example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMintParallel is Mint from every runner at once, sharing one
// Keyring.
func BenchmarkMintParallel(b *testing.B) {
	kr := fixedKeyring(b, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := kr.Mint("announce@lists.example.org", "member"+strconv.Itoa(i&1023)+"@example.com"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	kr := fixedKeyring(b, 1)
	tok, err := kr.Mint("announce@lists.example.org", "alice.member@example.com")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := kr.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
