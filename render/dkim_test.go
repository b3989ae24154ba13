package render

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	msgauth "github.com/emersion/go-msgauth/dkim"

	"fanmail/dkim"
	"fanmail/dmarc"
	"fanmail/internal/dkimpy"
	"fanmail/lists"
)

// testKeys makes an RSA and an Ed25519 key for lists.example.org and an
// RSA key for author.example, and returns the keyring and the records.
func testKeys(t *testing.T) (*dkim.Keyring, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []dkim.GenerateOptions{
		{Domain: "lists.example.org", Selector: "s1", Algorithm: dkim.RSA},
		{Domain: "lists.example.org", Selector: "s2", Algorithm: dkim.Ed25519},
		{Domain: "author.example", Selector: "a1", Algorithm: dkim.RSA},
	} {
		if _, err := dkim.Generate(dir, k); err != nil {
			t.Fatal(err)
		}
	}
	kr, err := dkim.LoadKeyring(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]string{}
	for _, k := range kr.Keys() {
		r := k.Record()
		recs[r.Name] = r.Value
	}
	return kr, recs
}

// TestSignedCopies signs copies of every shape and verifies them with
// go-msgauth and with dkimpy.
func TestSignedCopies(t *testing.T) {
	t.Parallel()
	kr, recs := testKeys(t)
	py := ""
	withFooter := lists.DefaultSettings()
	withFooter.Footer = footer
	withFooter.SubjectPrefix = "[announce]"
	wrap := withFooter
	wrap.DMARC = lists.DMARCWrap
	tests := []struct {
		name     string
		msg      string
		settings lists.Settings
		policy   dmarc.Policy
		wantD    string
		wantSigs int
	}{
		{"an outside author: the list's domain signs", plainPost, lists.DefaultSettings(), dmarc.PolicyNone, "lists.example.org", 2},
		{"footer and prefix", plainPost, withFooter, dmarc.PolicyNone, "lists.example.org", 2},
		{"munged From", rejectPost, withFooter, dmarc.PolicyReject, "lists.example.org", 2},
		{"wrapped", rejectPost, wrap, dmarc.PolicyReject, "lists.example.org", 2},
		{"the author's domain has a key: it signs",
			strings.Replace(plainPost, "poster@example.net", "poster@author.example", 1), lists.DefaultSettings(), dmarc.PolicyNone, "author.example", 1},
		{"a body without a last line end",
			strings.TrimSuffix(plainPost, "\r\n"), withFooter, dmarc.PolicyNone, "lists.example.org", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := splitPost(tt.msg)
			c, err := Render(p, List{Address: testList, Settings: tt.settings},
				Options{Hostname: "fanmail.test", DMARC: tt.policy, Keys: kr})
			if err != nil {
				t.Fatal(err)
			}
			if c.Signed != tt.wantD {
				t.Fatalf("signed by %q, want %q", c.Signed, tt.wantD)
			}
			msg, err := io.ReadAll(c.Reader(p.Body, p.Size))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(msg, []byte("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d="+tt.wantD+";")) {
				t.Errorf("the copy does not start with the RSA signature:\n%.300s", msg)
			}
			verifs := verifyDKIM(t, msg, recs)
			var ours int
			for _, v := range verifs {
				if v.Domain != tt.wantD {
					continue // the poster's own, broken by the list
				}
				ours++
				if v.Err != nil {
					t.Errorf("go-msgauth: d=%s: %v", v.Domain, v.Err)
				}
				for _, f := range []string{"from", "to", "subject", "date", "message-id", "list-id", "list-post", "list-unsubscribe"} {
					if !containsFold(v.HeaderKeys, f) {
						t.Errorf("signature does not cover %s: h=%v", f, v.HeaderKeys)
					}
				}
			}
			if ours != tt.wantSigs {
				t.Errorf("%d signatures by %s, want %d", ours, tt.wantD, tt.wantSigs)
			}
			if testing.Short() {
				return
			}
			if py == "" {
				py = dkimpy.Python(t)
			}
			res := dkimpy.Verify(t, py, recs, msg)
			n := 0
			for _, r := range res {
				if r == "pass" {
					n++
				}
			}
			if n != tt.wantSigs {
				t.Errorf("dkimpy passed %d signatures, want %d: %v", n, tt.wantSigs, res)
			}
		})
	}
	// A post without From: (DKIM must sign one) goes out unsigned.
	p := splitPost("Subject: no from\r\n\r\nbody\r\n")
	if c, err := Render(p, List{Address: testList, Settings: lists.DefaultSettings()}, Options{Hostname: "fanmail.test", Keys: kr}); err != nil || c.Signed != "" {
		t.Errorf("a post without From: signed %q, %v; want unsigned, no error", c.Signed, err)
	}
	// No key for either domain: no signature.
	p = splitPost(plainPost)
	c, err := Render(p, List{Address: "other@elsewhere.example", Settings: lists.DefaultSettings()},
		Options{Hostname: "fanmail.test", Keys: kr})
	if err != nil || c.Signed != "" || bytes.Contains(c.Header, []byte("DKIM-Signature")) {
		t.Errorf("a copy with no key for its domains: signed %q, %v", c.Signed, err)
	}
}

func containsFold(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// verifyDKIM verifies msg's signatures with go-msgauth, its key records
// looked up in recs (by fully qualified name).
func verifyDKIM(t *testing.T, msg []byte, recs map[string]string) []*msgauth.Verification {
	t.Helper()
	verifs, err := msgauth.VerifyWithOptions(bytes.NewReader(msg), &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			v, ok := recs[strings.TrimSuffix(name, ".")+"."]
			if !ok {
				return nil, fmt.Errorf("no TXT record %s", name)
			}
			return []string{v}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return verifs
}
