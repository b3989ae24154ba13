package render

import (
	"bytes"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"fanmail/envelope"
	"fanmail/internal/dkimpy"
	"fanmail/lists"
	"fanmail/unsubscribe"
)

func personalSettings(p lists.Personalize) lists.Settings {
	s := lists.DefaultSettings()
	s.Personalize = p
	return s
}

// TestPersonalizeOffUnchanged: with personalize=off the copy is the one
// Render always made, and carries no template.
func TestPersonalizeOffUnchanged(t *testing.T) {
	t.Parallel()
	kr, _ := testKeys(t)
	p := splitPost(plainPost)
	c, err := Render(p, List{Address: testList, Settings: lists.DefaultSettings()}, Options{Hostname: "fanmail.test", Keys: kr})
	if err != nil {
		t.Fatal(err)
	}
	if c.Personal.Mode != envelope.PersonalizeOff || c.Personal.Template != nil {
		t.Errorf("off copy has Personal %+v", c.Personal)
	}
}

// TestVERPMember: a verp member's sender is its VERP address; the copy
// is the list's, signed once, with the list's mailto List-Unsubscribe.
func TestVERPMember(t *testing.T) {
	t.Parallel()
	kr, _ := testKeys(t)
	p := splitPost(plainPost)
	c, err := Render(p, List{Address: testList, Settings: personalSettings(lists.PersonalizeVERP)}, Options{Hostname: "fanmail.test", Keys: kr})
	if err != nil {
		t.Fatal(err)
	}
	if c.Personal.Mode != envelope.PersonalizeVERP || c.Signed == "" || !bytes.Contains(c.Header, []byte("List-Unsubscribe: <mailto:")) {
		t.Fatalf("verp copy: mode %v, signed %q, header:\n%s", c.Personal.Mode, c.Signed, c.Header)
	}
	ms := &Members{Keys: kr}
	for _, tt := range []struct{ rcpt, want string }{
		{"Jo.Smith@Example.COM", "announce-bounces+Jo.Smith=example.com@lists.example.org"},
		{strings.Repeat("x", 60) + "@example.com", "announce-bounces@lists.example.org"}, // too long for VERP
	} {
		m, err := ms.Member(c.Personal, "announce-bounces@lists.example.org", tt.rcpt)
		if err != nil {
			t.Fatal(err)
		}
		if m.Sender != tt.want || len(m.Header) != 0 {
			t.Errorf("Member(%s) = %q, %q; want sender %q and no header", tt.rcpt, m.Sender, m.Header, tt.want)
		}
	}
}

var tokenRE = regexp.MustCompile(`<https://lists\.example\.org/u/([A-Za-z0-9_-]+)>`)

// TestFullMember: a full member's copy has its own List-Unsubscribe
// (one-click link and mailto) and List-Unsubscribe-Post under its own
// DKIM signature, which go-msgauth and dkimpy verify over the whole copy
// as sent; the link's token names exactly that member.
func TestFullMember(t *testing.T) {
	t.Parallel()
	kr, recs := testKeys(t)
	unsub, err := unsubscribe.Open(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	withFooter := personalSettings(lists.PersonalizeFull)
	withFooter.Footer = footer
	p := splitPost(plainPost)
	c, err := Render(p, List{Address: testList, Settings: withFooter}, Options{Hostname: "fanmail.test", Keys: kr})
	if err != nil {
		t.Fatal(err)
	}
	if c.Signed != "lists.example.org" || bytes.Contains(c.Header, []byte("DKIM-Signature")) || bytes.Contains(c.Header, []byte("List-Unsubscribe")) {
		t.Fatalf("full copy must be unsigned and without List-Unsubscribe until delivery (Signed %q):\n%s", c.Signed, c.Header)
	}
	ms := &Members{Keys: kr, Unsubscribe: unsub, BaseURL: "https://lists.example.org"}
	py := ""
	for _, rcpt := range []string{"a@example.com", "b@example.net"} {
		m, err := ms.Member(c.Personal, "announce-bounces@lists.example.org", rcpt)
		if err != nil {
			t.Fatal(err)
		}
		local, domain, _ := strings.Cut(rcpt, "@")
		if want := "announce-bounces+" + local + "=" + domain + "@lists.example.org"; m.Sender != want {
			t.Errorf("sender %q, want %q", m.Sender, want)
		}
		body, err := io.ReadAll(c.Reader(p.Body, p.Size))
		if err != nil {
			t.Fatal(err)
		}
		msg := append(append([]byte(nil), m.Header...), body...)
		tok := tokenRE.FindSubmatch(m.Header)
		if tok == nil {
			t.Fatalf("no one-click link in\n%s", m.Header)
		}
		if l, mem, err := unsub.Verify(string(tok[1])); err != nil || l != testList || mem != rcpt {
			t.Errorf("token names %q, %q (%v); want %s, %s", l, mem, err, testList, rcpt)
		}
		for _, f := range []string{"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
			"<mailto:announce-request@lists.example.org?subject=unsubscribe>\r\n"} {
			if !bytes.Contains(m.Header, []byte(f)) {
				t.Errorf("member header lacks %q:\n%s", f, m.Header)
			}
		}
		verifs := verifyDKIM(t, msg, recs)
		if len(verifs) != 2 {
			t.Fatalf("%d signatures, want 2 (RSA and Ed25519)", len(verifs))
		}
		for _, v := range verifs {
			if v.Err != nil || v.Domain != "lists.example.org" {
				t.Errorf("go-msgauth: d=%s: %v", v.Domain, v.Err)
			}
			for _, f := range []string{"from", "subject", "list-id", "list-unsubscribe", "list-unsubscribe-post"} {
				if !containsFold(v.HeaderKeys, f) {
					t.Errorf("signature does not cover %s: h=%v", f, v.HeaderKeys)
				}
			}
		}
		if testing.Short() {
			continue
		}
		if py == "" {
			py = dkimpy.Python(t)
		}
		dkimpy.AllPass(t, py, recs, msg, 2)
	}
	// Without a base URL: the mailto alone, no List-Unsubscribe-Post,
	// still signed per member.
	m, err := (&Members{Keys: kr}).Member(c.Personal, "announce-bounces@lists.example.org", "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(m.Header, []byte("List-Unsubscribe-Post")) || bytes.Contains(m.Header, []byte("https:")) ||
		!bytes.HasPrefix(m.Header, []byte("DKIM-Signature:")) || !bytes.Contains(m.Header, []byte("List-Unsubscribe: <mailto:")) {
		t.Errorf("member header without a base URL:\n%s", m.Header)
	}
}

// TestTemplateRejectsDamage: a template that does not decode is an
// error, never a guess.
func TestTemplateRejectsDamage(t *testing.T) {
	t.Parallel()
	good := personalTemplate{list: testList, domain: "lists.example.org", header: []byte("From: a@b\r\n\r\n")}.encode()
	if _, err := decodeTemplate(good); err != nil {
		t.Fatal(err)
	}
	for i := range len(good) {
		if _, err := decodeTemplate(good[:i]); err == nil {
			t.Errorf("a template cut at %d of %d decodes", i, len(good))
		}
	}
	if _, err := decodeTemplate(append(bytes.Clone(good), 0)); err == nil {
		t.Error("a template with a trailing byte decodes")
	}
}
