package dkim

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func TestGenerate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dkim")
	gen := func(o GenerateOptions) *Key {
		t.Helper()
		o.Now = testNow
		k, err := Generate(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a := gen(GenerateOptions{Domain: "Lists.Example.ORG.", Algorithm: Ed25519})
	if a.Domain != "lists.example.org" || a.Selector != "fm2026a" || a.Algorithm != Ed25519 || a.File != filepath.Join(dir, "lists.example.org", "fm2026a.key") {
		t.Errorf("first key: %+v", a)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Dir(a.File): 0o700 | os.ModeDir, a.File: 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v", path, st.Mode(), err, want)
		}
	}
	b := gen(GenerateOptions{Domain: "lists.example.org", Algorithm: Ed25519})
	if b.Selector != "fm2026b" {
		t.Errorf("second default selector %q, want fm2026b", b.Selector)
	}

	// An existing key is kept unless forced.
	before, _ := os.ReadFile(a.File)
	_, err := Generate(dir, GenerateOptions{Domain: "lists.example.org", Selector: "FM2026A", Algorithm: Ed25519})
	if err == nil || !strings.Contains(err.Error(), a.File+" already exists: give --force") {
		t.Errorf("overwrite without force: %v", err)
	}
	if after, _ := os.ReadFile(a.File); string(after) != string(before) {
		t.Error("the refused keygen changed the key file")
	}
	forced := gen(GenerateOptions{Domain: "lists.example.org", Selector: "fm2026a", Algorithm: Ed25519, Force: true})
	if after, _ := os.ReadFile(a.File); string(after) == string(before) || forced.Record() == a.Record() {
		t.Error("--force did not replace the key")
	}
	if entries, _ := os.ReadDir(filepath.Dir(a.File)); len(entries) != 2 {
		t.Errorf("key directory holds %d entries, want the 2 keys (no temporary files left)", len(entries))
	}

	// The loader reads what Generate wrote; b was written last but
	// forced rewrote fm2026a after it.
	kr, err := LoadKeyring(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(kr.Keys()) != 2 {
		t.Fatalf("loaded %d keys, want 2", len(kr.Keys()))
	}
	signing := kr.For("lists.example.org").Keys()
	if len(signing) != 1 || signing[0].Selector != "fm2026a" || signing[0].Record() != forced.Record() {
		t.Errorf("signing keys %v, want the newest, fm2026a", signing)
	}
}

func TestGenerateRSA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k, err := Generate(dir, GenerateOptions{Domain: "example.org", Selector: "s1", Algorithm: RSA})
	if err != nil {
		t.Fatal(err)
	}
	if k.Bits != 2048 || k.Algorithm != RSA {
		t.Errorf("got %s of %d bits, want rsa of 2048", k.Algorithm, k.Bits)
	}
	kr, err := LoadKeyring(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := kr.Keys()[0].Record(); got != k.Record() {
		t.Errorf("loaded record %v, generated %v", got, k.Record())
	}
}

// TestGenerateBadInput checks that bad input writes nothing at all.
func TestGenerateBadInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 60)
	tests := []struct {
		o    GenerateOptions
		want string
	}{
		{GenerateOptions{Domain: "", Algorithm: RSA}, `domain "": empty`},
		{GenerateOptions{Domain: "localhost", Algorithm: RSA}, `domain "localhost": a single label`},
		{GenerateOptions{Domain: "exa mple.org", Algorithm: RSA}, `domain "exa mple.org": ' ' in label "exa mple"`},
		{GenerateOptions{Domain: "a..org", Algorithm: RSA}, `domain "a..org"`},
		{GenerateOptions{Domain: "-a.org", Algorithm: RSA}, `domain "-a.org"`},
		{GenerateOptions{Domain: "under_score.org", Algorithm: RSA}, `domain "under_score.org": '_' in label "under_score": only letters, digits and hyphens`},
		{GenerateOptions{Domain: "bü_cher.example", Algorithm: RSA}, `domain "bü_cher.example": not a valid internationalized domain name`},
		{GenerateOptions{Domain: "\xff.org", Algorithm: RSA}, "invalid UTF-8"},
		{GenerateOptions{Domain: "example.org", Algorithm: "dsa"}, `algorithm "dsa": use rsa`},
		{GenerateOptions{Domain: "example.org", Algorithm: ""}, `algorithm "": use rsa`},
		{GenerateOptions{Domain: "example.org", Algorithm: RSA, Selector: "a_b"}, `selector "a_b": '_' in label "a_b"`},
		{GenerateOptions{Domain: "example.org", Algorithm: RSA, Selector: "a/b"}, `selector "a/b": '/' in label`},
		{GenerateOptions{Domain: "example.org", Algorithm: RSA, Selector: "../x"}, `selector "../x": an empty label`},
		{GenerateOptions{Domain: "example.org", Algorithm: RSA, Selector: "-x"}, "starts or ends with a hyphen"},
		{GenerateOptions{Domain: "example.org", Algorithm: RSA, Selector: strings.Repeat("x", 64)}, "longer than 63"},
		{GenerateOptions{Domain: long + "." + long + "." + long + ".org", Algorithm: RSA, Selector: long}, "longer than 253 characters: choose a shorter selector"},
	}
	for _, tt := range tests {
		dir := filepath.Join(t.TempDir(), "dkim")
		_, err := Generate(dir, tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Generate(%+v): %v, want an error containing %q", tt.o, err, tt.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("Generate(%+v) created %s", tt.o, dir)
		}
	}
}

func TestDefaultSelectorExhausted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for c := 'a'; c <= 'z'; c++ {
		installKey(t, dir, "example.org", "fm2026"+string(c), "ed25519.pem")
	}
	_, err := DefaultSelector(dir, "example.org", testNow)
	if err == nil || !strings.Contains(err.Error(), "fm2026a to fm2026z are all taken for example.org: give --selector") {
		t.Errorf("got %v", err)
	}
	if sel, _ := DefaultSelector(dir, "example.org", testNow.AddDate(1, 0, 0)); sel != "fm2027a" {
		t.Errorf("next year: %q, want fm2027a", sel)
	}
}

func writePEM(t *testing.T, file, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}

// pemFile returns a setup of TestLoadKeyringProblems that writes a PEM
// block at rel (slash-separated, under the keys directory) and names it.
func pemFile(rel, typ string, der []byte, mode os.FileMode) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		f := filepath.Join(dir, filepath.FromSlash(rel))
		writePEM(t, f, typ, der, mode)
		return f
	}
}

// testdataKey returns a setup that installs testdata key name as
// domain's selector sel.
func testdataKey(domain, sel, name string) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string { return installKey(t, dir, domain, sel, name) }
}

// domainDir returns a setup that makes a domain directory named name
// holding an RSA key (PKCS#1 DER), and names the directory.
func domainDir(name string, pkcs1 []byte) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		f := filepath.Join(dir, name)
		writePEM(t, filepath.Join(f, "s.key"), "RSA PRIVATE KEY", pkcs1, 0o600)
		return f
	}
}

// TestLoadKeyringProblems puts one bad thing next to a good key: the
// error names the file and the fix, and the good key still loads.
func TestLoadKeyringProblems(t *testing.T) {
	t.Parallel()
	rsaKey, _ := os.ReadFile(filepath.Join("testdata", "keys", "rsa.pem"))
	block, _ := pem.Decode(rsaKey)
	parsed, _ := x509.ParsePKCS8PrivateKey(block.Bytes)
	pkcs1 := x509.MarshalPKCS1PrivateKey(parsed.(*rsa.PrivateKey))
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	pubDER, _ := x509.MarshalPKIXPublicKey(parsed.(*rsa.PrivateKey).Public())

	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the file named in the error
		want  string                                // "" = no error
		keys  int                                   // keys loaded, with the good one
	}{
		{"PKCS#1 RSA key (OpenDKIM)", pemFile("example.net/mail.key", "RSA PRIVATE KEY", pkcs1, 0o600), "", 2},
		{"dotfiles are ignored", pemFile("good.example/.sel.key.tmp123", "junk", []byte("x"), 0o600), "", 1},
		{"group-readable", pemFile("example.net/s.key", "RSA PRIVATE KEY", pkcs1, 0o640), "mode 0640 lets group or others read the private key: chmod 600 ", 1},
		{"world-readable", pemFile("example.net/s.key", "RSA PRIVATE KEY", pkcs1, 0o604), "mode 0604 lets group or others read", 1},
		{"missing (dangling link)", func(t *testing.T, dir string) string {
			f := filepath.Join(dir, "example.net", "s.key")
			os.MkdirAll(filepath.Dir(f), 0o700)
			os.Symlink(filepath.Join(dir, "nowhere.key"), f)
			return f
		}, "missing (a link to a file that is not there): restore the key it points to, or remove the link", 1},
		{"not PEM", func(t *testing.T, dir string) string {
			f := filepath.Join(dir, "example.net", "s.key")
			os.MkdirAll(filepath.Dir(f), 0o700)
			os.WriteFile(f, []byte("v=DKIM1; k=rsa; p=MIIB"), 0o600)
			return f
		}, "no PEM block (expected -----BEGIN PRIVATE KEY-----", 1},
		{"public key instead", pemFile("example.net/s.key", "PUBLIC KEY", pubDER, 0o600), `PEM block "PUBLIC KEY" is not a private key`, 1},
		{"truncated", pemFile("example.net/s.key", "PRIVATE KEY", block.Bytes[:100], 0o600), "malformed PRIVATE KEY", 1},
		{"encrypted", pemFile("example.net/s.key", "ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}, 0o600), "the key is encrypted", 1},
		{"ECDSA", pemFile("example.net/s.key", "PRIVATE KEY", ecDER, 0o600), "a *ecdsa.PrivateKey key: DKIM signs with rsa or ed25519 keys only", 1},
		{"RSA too small", testdataKey("example.net", "s", "rsa512.pem"), "RSA key of 512 bits: verifiers take 1024 to 4096 (RFC 8301); generate a new one", 1},
		{"RSA too large", testdataKey("example.net", "s", "rsa5120.pem"), "RSA key of 5120 bits: verifiers take 1024 to 4096", 1},
		{"not a key file", pemFile("good.example/s.pem", "RSA PRIVATE KEY", pkcs1, 0o600), "not a key file (keys are named SELECTOR.key): move it out of", 1},
		{"uppercase selector", pemFile("good.example/Sel.key", "RSA PRIVATE KEY", pkcs1, 0o600), "the file name is not a lowercase selector followed by .key", 1},
		{"file at the top", pemFile("example.net.key", "RSA PRIVATE KEY", pkcs1, 0o600), "not a domain directory (keys go in ", 1},
		{"bad domain directory", domainDir("not_a_domain", pkcs1), "the directory name is the signing domain", 1},
		{"uppercase domain directory", domainDir("Example.NET", pkcs1), "directory name is not the domain's normal form: rename it to ", 1},
		{"empty domain directory", func(t *testing.T, dir string) string {
			f := filepath.Join(dir, "example.net")
			os.MkdirAll(f, 0o700)
			return f
		}, "no key in the directory: generate one with fanmail dkim keygen example.net, or remove the directory", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			installKey(t, dir, "good.example", "sel", "ed25519.pem")
			file := tt.setup(t, dir)
			kr, err := LoadKeyring(dir, nil)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), file+": ")):
				t.Errorf("error:\n%v\nwant one starting with %s: and containing %q", err, file, tt.want)
			}
			if len(kr.Keys()) != tt.keys {
				t.Errorf("%d keys loaded, want %d", len(kr.Keys()), tt.keys)
			}
			if kr.For("good.example") == nil {
				t.Error("the good key does not sign")
			}
		})
	}
}

func TestLoadKeyringUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file: the permission check cannot be seen")
	}
	dir := t.TempDir()
	f := installKey(t, dir, "example.org", "s", "rsa.pem")
	os.Chmod(f, 0o000)
	_, err := LoadKeyring(dir, nil)
	if err == nil || !strings.Contains(err.Error(), f+": permission denied: run fanmail as the key's owner") {
		t.Errorf("got %v", err)
	}
}

func TestLoadKeyringNoDirectory(t *testing.T) {
	kr, err := LoadKeyring(filepath.Join(t.TempDir(), "dkim"), nil)
	if err != nil || len(kr.Keys()) != 0 || kr.For("example.org") != nil {
		t.Errorf("got %v, %v; want an empty keyring", kr.Keys(), err)
	}
	var none *Keyring
	if none.For("example.org") != nil || none.Pick("a.org", "b.org") != nil || none.Keys() != nil {
		t.Error("a nil keyring has keys")
	}
}

// TestNewestKeySigns: with two keys of one algorithm the most recently
// written signs; a key of the other algorithm signs beside it.
func TestNewestKeySigns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	older := installKey(t, dir, "example.org", "fm2026z", "rsa.pem")
	newer := installKey(t, dir, "example.org", "fm2026a", "rsa.pem")
	ed := installKey(t, dir, "example.org", "ed", "ed25519.pem")
	os.Chtimes(older, testNow, testNow)
	os.Chtimes(newer, testNow.Add(time.Hour), testNow.Add(time.Hour))
	kr, err := LoadKeyring(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range kr.For("example.org").Keys() {
		got = append(got, k.File)
	}
	if diff := cmp.Diff([]string{newer, ed}, got); diff != "" {
		t.Errorf("signing keys (-want +got):\n%s", diff)
	}
	for _, k := range kr.Keys() {
		if want := k.File != older; kr.Signs(k) != want {
			t.Errorf("Signs(%s) = %v, want %v", k.File, !want, want)
		}
	}
}

func TestKeyringForAndPick(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	installKey(t, dir, "lists.example.org", "s", "ed25519.pem")
	installKey(t, dir, "example.org", "s", "ed25519.pem")
	installKey(t, dir, "xn--bcher-kva.example", "s", "ed25519.pem")
	kr, err := LoadKeyring(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"example.org": "example.org", "EXAMPLE.Org.": "example.org", "lists.example.org": "lists.example.org",
		"bücher.example": "xn--bcher-kva.example", "XN--BCHER-KVA.example": "xn--bcher-kva.example",
		"sub.lists.example.org": "", "org": "", "": "", "not a domain": "", "example.net": "",
	} {
		if got := kr.For(in).Domain(); got != want {
			t.Errorf("For(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tt := range []struct{ from, sender, want string }{
		{"example.org", "lists.example.org", "example.org"},
		{"gmail.example", "lists.example.org", "lists.example.org"},
		{"", "lists.example.org", "lists.example.org"},
		{"gmail.example", "bounces.example", ""},
	} {
		if got := kr.Pick(tt.from, tt.sender).Domain(); got != tt.want {
			t.Errorf("Pick(%q, %q) = %q, want %q", tt.from, tt.sender, got, tt.want)
		}
	}
}

// TestRecord checks the TXT record against the key and its zone-file
// form against miekg/dns's zone parser.
func TestRecord(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	for _, k := range kr.Keys() {
		r := k.Record()
		if want := k.Selector + "._domainkey." + k.Domain + "."; r.Name != want {
			t.Errorf("name %q, want %q", r.Name, want)
		}
		strs := r.Strings()
		for _, s := range strs {
			if len(s) > 255 {
				t.Errorf("%s: a string of %d octets", r.Name, len(s))
			}
		}
		if strings.Join(strs, "") != r.Value {
			t.Errorf("%s: strings do not join to the value", r.Name)
		}
		p, ok := strings.CutPrefix(r.Value, "v=DKIM1; k="+string(k.Algorithm)+"; p=")
		if !ok {
			t.Fatalf("value %q", r.Value)
		}
		der, err := base64.StdEncoding.DecodeString(p)
		if err != nil {
			t.Fatal(err)
		}
		switch k.Algorithm {
		case RSA:
			pub, err := x509.ParsePKIXPublicKey(der)
			if err != nil || !pub.(*rsa.PublicKey).Equal(k.signer.Public()) {
				t.Errorf("%s: p= is not the key's public half: %v", r.Name, err)
			}
			if len(strs) != 2 {
				t.Errorf("RSA-2048 record in %d strings, want 2", len(strs))
			}
		case Ed25519:
			if string(der) != string(k.signer.Public().(ed25519.PublicKey)) {
				t.Errorf("%s: p= is not the raw Ed25519 public key", r.Name)
			}
		}
		rr, err := dns.NewRR(r.Zone())
		if err != nil {
			t.Fatalf("zone line %q: %v", r.Zone(), err)
		}
		txt, ok := rr.(*dns.TXT)
		if !ok || txt.Hdr.Name != r.Name {
			t.Fatalf("zone line parses as %v", rr)
		}
		if diff := cmp.Diff(strs, txt.Txt); diff != "" {
			t.Errorf("%s: strings in the zone line (-want +got):\n%s", r.Name, diff)
		}
	}
}
