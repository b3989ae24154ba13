package unsubscribe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzVerify feeds Verify arbitrary text. It must never panic, and
// whatever it accepts must be exactly the token Mint makes for the pair
// it returns: no second spelling of a token verifies. The seeds in
// testdata/fuzz/FuzzVerify include tokens signed with writeKey's fixed
// key 1, so mutations start from valid structure.
func FuzzVerify(f *testing.F) {
	kr := fixedKeyring(f, 1)
	for _, p := range [][2]string{
		{"announce@example.org", "alice@example.com"},
		{"liste@bücher.example", "jürgen@münchen.example"},
	} {
		tok, err := kr.Mint(p[0], p[1])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	f.Add("")
	f.Add("AQEUYW5ub3VuY2VAZXhhbXBsZS5vcmc")
	f.Fuzz(func(t *testing.T, tok string) {
		list, member, err := kr.Verify(tok)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Verify(%q): error %v does not wrap ErrInvalid", tok, err)
			}
			return
		}
		again, err := kr.Mint(list, member)
		if err != nil {
			t.Fatalf("Verify(%q) = %q, %q, which Mint rejects: %v", tok, list, member, err)
		}
		if again != tok {
			t.Fatalf("Verify accepted %q for (%q, %q), whose token is %q", tok, list, member, again)
		}
	})
}

// FuzzParse feeds the structure check decoded octets directly, past the
// MAC that would stop almost every input of FuzzVerify. Whatever it
// accepts re-encodes to the same payload.
func FuzzParse(f *testing.F) {
	mac := make([]byte, macLen)
	f.Add(append([]byte{format, 1, 3, 'a', '@', 'b', 'c', '@', 'd'}, mac...))
	f.Add(append([]byte{format, 0xff, 0xff, 0x03, 3, 'a', '@', 'b', 'c', '@', 'd'}, mac...))
	f.Add(append([]byte{format, 0x81, 0x00, 1, 'a', 'b'}, mac...))
	f.Add([]byte{format})
	f.Fuzz(func(t *testing.T, raw []byte) {
		id, list, member, err := parse(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("parse(%q): error %v does not wrap ErrInvalid", raw, err)
			}
			return
		}
		p := append([]byte{format}, binary.AppendUvarint(nil, id)...)
		p = append(p, byte(len(list)))
		p = append(append(p, list...), member...)
		if !bytes.Equal(p, raw[:len(raw)-macLen]) {
			t.Fatalf("parse(%q) = %d, %q, %q, which encode as %q", raw, id, list, member, p)
		}
	})
}

// FuzzMintVerify: every pair Mint accepts comes back from Verify as it
// went in.
func FuzzMintVerify(f *testing.F) {
	kr := fixedKeyring(f, 1, 300)
	f.Add("announce@example.org", "alice@example.com")
	f.Add("列表@例子.测试", `"john smith"@example.com`)
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, list, member string) {
		tok, err := kr.Mint(list, member)
		if err != nil {
			return
		}
		l, m, err := kr.Verify(tok)
		if err != nil || l != list || m != member {
			t.Fatalf("Verify(Mint(%q, %q)) = %q, %q, %v", list, member, l, m, err)
		}
	})
}
