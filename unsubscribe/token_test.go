package unsubscribe

import (
	"encoding/binary"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var urlSafe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func long(n int, domain string) string {
	return strings.Repeat("a", n-len(domain)-1) + "@" + domain
}

func TestMintVerifyRoundTrip(t *testing.T) {
	kr := fixedKeyring(t, 1)
	tests := []struct{ list, member string }{
		{"announce@example.org", "alice@example.com"},
		{"Announce@Example.org", "Alice@example.com"}, // as given: the store decides what matches
		{"liste@bücher.example", "jürgen@münchen.example"},
		{"列表@例子.测试", "用户@例子.测试"},
		{"announce@example.org", `"john smith"@example.com`},
		{"a@b", "c@d"},
		{long(MaxAddrLen, "example.org"), long(MaxAddrLen, "example.com")},
	}
	for _, tt := range tests {
		tok, err := kr.Mint(tt.list, tt.member)
		if err != nil {
			t.Errorf("Mint(%q, %q): %v", tt.list, tt.member, err)
			continue
		}
		if !urlSafe.MatchString(tok) || len(tok) > MaxTokenLen {
			t.Errorf("Mint(%q, %q) = %q: not %d URL-safe characters at most", tt.list, tt.member, tok, MaxTokenLen)
		}
		list, member, err := kr.Verify(tok)
		if err != nil {
			t.Errorf("Verify(Mint(%q, %q)): %v", tt.list, tt.member, err)
			continue
		}
		if diff := cmp.Diff([]string{tt.list, tt.member}, []string{list, member}); diff != "" {
			t.Errorf("Verify(Mint()) -want +got:\n%s", diff)
		}
	}
}

// The lengths the package doc promises, and the header line they make.
func TestTokenLength(t *testing.T) {
	kr := fixedKeyring(t, 1)
	tok, _ := kr.Mint("announce@example.org", "alice@example.com")
	if len(tok) != 75 {
		t.Errorf("typical token is %d characters, want 75: %s", len(tok), tok)
	}
	high := fixedKeyring(t, 1, MaxKeyID)
	longest, err := high.Mint(long(MaxAddrLen, "example.org"), long(MaxAddrLen, "example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if len(longest) != MaxTokenLen {
		t.Errorf("longest token is %d characters, MaxTokenLen is %d", len(longest), MaxTokenLen)
	}
	base := "https://" + strings.Repeat("l", MaxBaseURLLen-len("https://"))
	if _, err := ParseBaseURL(base); err != nil {
		t.Fatal(err)
	}
	// RFC 5322 §2.1.1: at most 998 characters, CRLF excluded.
	if line := "List-Unsubscribe: <" + URL(base, longest) + ">"; len(line) > 998 {
		t.Errorf("the longest header line is %d characters, over 998", len(line))
	}
}

func TestMintRejects(t *testing.T) {
	kr := fixedKeyring(t, 1)
	tests := []struct{ list, member, want string }{
		{"", "alice@example.com", "list address"},
		{"announce@example.org", "", "member address"},
		{long(MaxAddrLen+1, "example.org"), "alice@example.com", "longer than 254"},
		{"announce@example.org", long(MaxAddrLen+1, "example.com"), "longer than 254"},
		{"announce@example.org", "al\xffce@example.com", "not UTF-8"},
	}
	for _, tt := range tests {
		tok, err := kr.Mint(tt.list, tt.member)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Mint(%q, %q) = %q, %v; want an error saying %q", tt.list, tt.member, tok, err, tt.want)
		}
	}
}

// rawToken decodes a token for tests that tamper with its octets.
func rawToken(t *testing.T, tok string) []byte {
	t.Helper()
	raw, err := enc.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// sign builds a token from a payload with key id's MAC, as an attacker
// who held the key would: the tests use it to show that the structure
// checks hold even then.
func sign(kr *Keyring, id uint64, payload []byte) string {
	k := kr.keys[id]
	st := k.get()
	defer k.put(st)
	return enc.EncodeToString(st.seal(append(st.payload(), payload...)))
}

func TestVerifyRejectsForgeries(t *testing.T) {
	kr := fixedKeyring(t, 1)
	good, _ := kr.Mint("announce@example.org", "alice@example.com")
	other, _ := kr.Mint("announce@example.org", "bob@example.com")
	otherList, _ := kr.Mint("staff@example.org", "alice@example.com")
	raw := rawToken(t, good)
	macOf := func(tok string) []byte { r := rawToken(t, tok); return r[len(r)-macLen:] }
	payloadOf := func(tok string) []byte { r := rawToken(t, tok); return r[:len(r)-macLen] }
	splice := func(payload, mac []byte) string {
		return enc.EncodeToString(append(append([]byte(nil), payload...), mac...))
	}

	stranger := fixedKeyring(t, 7) // another server's key, renamed to id 1 below
	strangerTok := sign(&Keyring{keys: map[uint64]*key{1: stranger.keys[7]}}, 1, payloadOf(good))

	// The list length moved by one: the same octets cut into another
	// (list, member) pair, under the original MAC.
	recut := payloadOf(good)
	recut[2]++

	cases := map[string]string{
		"empty":                    "",
		"padding":                  good + "=",
		"not base64url":            good[:10] + "+" + good[11:],
		"non-canonical last char":  good[:len(good)-1] + string(nextChar(good[len(good)-1])),
		"too long":                 strings.Repeat("A", MaxTokenLen+1),
		"truncated MAC":            enc.EncodeToString(raw[:len(raw)-1]),
		"no MAC":                   enc.EncodeToString(raw[:len(raw)-macLen]),
		"member B with A's MAC":    splice(payloadOf(other), macOf(good)),
		"other list with A's MAC":  splice(payloadOf(otherList), macOf(good)),
		"list and member re-cut":   splice(recut, macOf(good)),
		"another server's key":     strangerTok,
		"key id not kept":          sign(fixedKeyring(t, 1, 2), 2, append([]byte{format, 2}, payloadOf(good)[2:]...)),
		"format 2":                 sign(kr, 1, append([]byte{2}, payloadOf(good)[1:]...)),
		"key id 0":                 sign(kr, 1, append([]byte{format, 0}, payloadOf(good)[2:]...)),
		"key id non-minimal":       sign(kr, 1, append([]byte{format, 0x81, 0x00}, payloadOf(good)[2:]...)),
		"list length 0":            sign(kr, 1, append([]byte{format, 1, 0}, payloadOf(good)[3:]...)),
		"no member":                sign(kr, 1, append([]byte{format, 1, 20}, "announce@example.org"...)),
		"member over 254 octets":   sign(kr, 1, append([]byte{format, 1, 3}, "a@b"+long(MaxAddrLen+1, "x")...)),
		"list length past the end": sign(kr, 1, append([]byte{format, 1, 200}, "announce@example.org"...)),
		"address not UTF-8":        sign(kr, 1, append([]byte{format, 1, 3}, "a@b\xff@c"...)),
		"key id past the end":      sign(kr, 1, []byte{format, 0x81, 0x81, 0x81}),
		"one octet plus MAC":       sign(kr, 1, []byte{format}),
	}
	for name, tok := range cases {
		list, member, err := kr.Verify(tok)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Verify(%q) = %q, %q, %v; want ErrInvalid", name, tok, list, member, err)
		}
	}
	// The tokens above that were signed with key 1 show that only the
	// structure check stopped them; the valid ones still pass.
	for _, tok := range []string{good, other, otherList} {
		if _, _, err := kr.Verify(tok); err != nil {
			t.Errorf("Verify(%q): %v", tok, err)
		}
	}
}

// nextChar is c's neighbour in the base64url alphabet that differs only
// in the low bits a 75-character token leaves unused.
func nextChar(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return alphabet[i^1]
}

// Every single-bit change of a token, and every one-character change of
// its text, is rejected: nothing but the exact token verifies.
func TestVerifyRejectsEveryBitFlip(t *testing.T) {
	kr := fixedKeyring(t, 1)
	good, _ := kr.Mint("announce@example.org", "alice@example.com")
	raw := rawToken(t, good)
	for i := range len(raw) * 8 {
		flipped := append([]byte(nil), raw...)
		flipped[i/8] ^= 1 << (i % 8)
		if l, m, err := kr.Verify(enc.EncodeToString(flipped)); !errors.Is(err, ErrInvalid) {
			t.Errorf("bit %d flipped: Verify = %q, %q, %v; want ErrInvalid", i, l, m, err)
		}
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(good) {
		for _, c := range []byte(alphabet) {
			if c == good[i] {
				continue
			}
			tok := good[:i] + string(c) + good[i+1:]
			if l, m, err := kr.Verify(tok); !errors.Is(err, ErrInvalid) {
				t.Fatalf("character %d changed to %c: Verify = %q, %q, %v; want ErrInvalid", i, c, l, m, err)
			}
		}
	}
}

// Tokens are distinct per (list, member) and deterministic per key.
func TestTokensNameOnePair(t *testing.T) {
	kr := fixedKeyring(t, 1)
	pairs := [][2]string{
		{"announce@example.org", "alice@example.com"},
		{"announce@example.org", "Alice@example.com"},
		{"announce@example.org", "bob@example.com"},
		{"staff@example.org", "alice@example.com"},
		{"announce@example.orga", "lice@example.com"}, // same octets, cut elsewhere
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		tok, _ := kr.Mint(p[0], p[1])
		if again, _ := kr.Mint(p[0], p[1]); again != tok {
			t.Errorf("Mint(%q, %q) is not deterministic: %s, %s", p[0], p[1], tok, again)
		}
		if q, dup := seen[tok]; dup {
			t.Errorf("%v and %v share the token %s", p, q, tok)
		}
		seen[tok] = p
	}
}

func TestMintConcurrent(t *testing.T) {
	kr := fixedKeyring(t, 1, 2)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				member := strings.Repeat("m", 1+(g*200+i)%60) + "@example.com"
				tok, err := kr.Mint("announce@example.org", member)
				if err != nil {
					t.Error(err)
					return
				}
				if _, m, err := kr.Verify(tok); err != nil || m != member {
					t.Errorf("Verify(Mint(%q)) = %q, %v", member, m, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestParseBaseURL(t *testing.T) {
	ok := map[string]string{
		"https://lists.example.org":          "https://lists.example.org",
		"https://lists.example.org/":         "https://lists.example.org",
		"https://example.org/fanmail/":       "https://example.org/fanmail",
		"https://example.org:8443/a%2Cb":     "https://example.org:8443/a%2Cb",
		"http://127.0.0.1:8080":              "http://127.0.0.1:8080",
		"http://localhost:8080/":             "http://localhost:8080",
		"http://[::1]:8080":                  "http://[::1]:8080",
		"https://xn--bcher-kva.example/list": "https://xn--bcher-kva.example/list",
	}
	for in, want := range ok {
		got, err := ParseBaseURL(in)
		if err != nil || got != want {
			t.Errorf("ParseBaseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                                    "not set",
		"lists.example.org":                   "absolute https",
		"/u":                                  "absolute https",
		"ftp://lists.example.org":             "absolute https",
		"https://":                            "no host",
		"https:lists.example.org":             "no host",
		"http://lists.example.org":            "plain http",
		"http://192.0.2.1:8080":               "plain http",
		"https://user:pw@lists.example.org":   "user name",
		"https://lists.example.org/?a=b":      "query",
		"https://lists.example.org/?":         "query",
		"https://lists.example.org/#top":      "fragment",
		"https://lists.example.org/a b":       "percent-encode",
		"https://lists.example.org/a,b":       "percent-encode",
		"https://lists.example.org/<x>":       "percent-encode",
		"https://bücher.example":              "percent-encode",
		"https://lists.example.org/\r\nX: y":  "percent-encode",
		"https://" + strings.Repeat("a", 300): "more than 256",
	}
	for in, want := range bad {
		got, err := ParseBaseURL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseBaseURL(%q) = %q, %v; want an error saying %q", in, got, err, want)
		}
	}
}

func TestURL(t *testing.T) {
	if got, want := URL("https://lists.example.org/fanmail", "TOK"), "https://lists.example.org/fanmail/u/TOK"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
}

// The key id's uvarint stays within maxIDLen octets for every id.
func TestMaxIDLen(t *testing.T) {
	if n := len(binary.AppendUvarint(nil, MaxKeyID)); n != maxIDLen {
		t.Errorf("MaxKeyID takes %d octets, maxIDLen is %d", n, maxIDLen)
	}
}
