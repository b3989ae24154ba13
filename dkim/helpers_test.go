package dkim

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// testNow is the signing time of the tests' signatures.
var testNow = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// The test domains: one per algorithm, and one with both keys.
const (
	rsaDomain  = "rsa.example.org"
	edDomain   = "ed.example.org"
	dualDomain = "example.org"
)

// installKey copies a fixture key from testdata/keys (git keeps it 0644)
// into dir as DOMAIN/SELECTOR.key, mode 0600.
func installKey(t testing.TB, dir, domain, selector, fixture string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "keys", fixture))
	if err != nil {
		t.Fatal(err)
	}
	file := keyFile(dir, domain, selector)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// testKeyring returns a keyring with the three test domains, signing at
// testNow.
func testKeyring(t testing.TB) *Keyring {
	t.Helper()
	dir := t.TempDir()
	installKey(t, dir, rsaDomain, "sel1", "rsa.pem")
	installKey(t, dir, edDomain, "sel2", "ed25519.pem")
	installKey(t, dir, dualDomain, "fm2026a", "rsa.pem")
	installKey(t, dir, dualDomain, "fm2026b", "ed25519.pem")
	kr, err := LoadKeyring(dir, func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// records returns the DNS TXT records of every key, by absolute name.
func records(kr *Keyring) map[string]Record {
	m := map[string]Record{}
	for _, k := range kr.Keys() {
		r := k.Record()
		m[r.Name] = r
	}
	return m
}

// verifyGo verifies every signature of msg with go-msgauth, looking keys
// up in recs, and returns one error (or nil) per signature.
func verifyGo(t testing.TB, msg io.Reader, recs map[string]Record) []error {
	t.Helper()
	verifs, err := msgauth.VerifyWithOptions(msg, &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			r, ok := recs[strings.TrimSuffix(name, ".")+"."]
			if !ok {
				return nil, fmt.Errorf("no TXT record %s", name)
			}
			// One record, its strings joined, as net.LookupTXT gives it.
			return []string{strings.Join(r.Strings(), "")}, nil
		},
	})
	if err != nil {
		t.Fatalf("go-msgauth: %v", err)
	}
	var errs []error
	for _, v := range verifs {
		errs = append(errs, v.Err)
	}
	return errs
}

// signed returns sig + header + sep + body.
func signed(sig, header, sep, body string) []byte {
	var b bytes.Buffer
	b.WriteString(sig)
	b.WriteString(header)
	b.WriteString(sep)
	b.WriteString(body)
	return b.Bytes()
}
