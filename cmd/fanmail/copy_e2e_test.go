package main

// What members receive, through the real binary: the copy's header, its
// DKIM signatures checked by dkimpy against the records `dkim keygen`
// printed, and DMARC munge and wrap against a DNS server publishing
// p=reject, p=none and nothing.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	msgauth "github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"fanmail/internal/dkimpy"
)

// keygen runs `fanmail dkim keygen DOMAIN --algorithm ALG`, publishes the
// record it printed in n's DNS, and returns it as name → value.
func (n *fakeNet) keygen(t *testing.T, cfg, domain, alg string) (string, string) {
	t.Helper()
	out := fanmailCLI(t, cfg, "", "dkim", "keygen", domain, "--algorithm", alg)
	zone := zoneRecord(t, out)
	if err := n.dns.AddRR(zone); err != nil {
		t.Fatalf("the printed record is not zone-file syntax: %v\n%s", err, out)
	}
	rr, err := dns.NewRR(zone)
	if err != nil {
		t.Fatal(err)
	}
	return rr.Header().Name, strings.Join(rr.(*dns.TXT).Txt, "")
}

// TestDeliveredCopyEndToEnd: a post without Date or Message-ID reaches
// the member with both, the RFC 2369 and 2919 fields, the subject
// prefix and footer, and two DKIM signatures (RSA and Ed25519) that
// dkimpy and go-msgauth verify against the records keygen printed.
func TestDeliveredCopyEndToEnd(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test", "lists.example.org"}, nil)
	cfg := n.newConfig(t, "")
	records := map[string]string{}
	for _, alg := range []string{"rsa", "ed25519"} {
		name, value := n.keygen(t, cfg, "lists.example.org", alg)
		records[name] = value
	}
	openList(t, cfg, e2eList)
	fanmailCLI(t, cfg, "", "member", "add", e2eList, "m@d00.test")
	fanmailCLI(t, cfg, "", "list", "set", e2eList, "subject_prefix=[announce]", "footer=-- \nannounce mailing list",
		"archive_url=https://lists.example.org/announce/")
	p := startFanmail(t, cfg)
	if !strings.Contains(p.log.String(), "dkim_domains=[lists.example.org]") {
		t.Errorf("start-up line does not name the signing domain:\n%s", p.log)
	}
	postTo(t, p.addr, "poster@example.org", e2eList,
		"From: Poster <poster@example.org>\r\nTo: announce@lists.example.org\r\nSubject: no date here\r\n\r\nBody text.\r\n")
	got := n.waitMessages(t, "m@d00.test", 1, p)[0].Data
	e, err := message.Read(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	h := e.Header
	for field, want := range map[string]string{
		"List-Id":          "<announce.lists.example.org>",
		"List-Post":        "<mailto:announce@lists.example.org>",
		"List-Help":        "<mailto:announce-request@lists.example.org?subject=help>",
		"List-Subscribe":   "<mailto:announce-request@lists.example.org?subject=subscribe>",
		"List-Unsubscribe": "<mailto:announce-request@lists.example.org?subject=unsubscribe>",
		"List-Archive":     "<https://lists.example.org/announce/>",
		"Precedence":       "list",
		"Subject":          "[announce] no date here",
	} {
		if v := h.Get(field); v != want {
			t.Errorf("%s: %q, want %q", field, v, want)
		}
	}
	if !strings.HasSuffix(h.Get("Message-Id"), "@fanmail.test>") || h.Get("Date") == "" {
		t.Errorf("Date %q, Message-ID %q: want both added", h.Get("Date"), h.Get("Message-Id"))
	}
	if !bytes.HasSuffix(got, []byte("\r\n\r\nBody text.\r\n-- \r\nannounce mailing list\r\n")) {
		t.Errorf("body or footer wrong:\n%s", got)
	}
	if len(h.Values("Dkim-Signature")) != 2 {
		t.Fatalf("%d DKIM signatures, want RSA and Ed25519:\n%s", len(h.Values("Dkim-Signature")), got)
	}
	n.verifyListDKIM(t, dkimpy.Python(t), records, got)
	p.stop(t)
}

// verifyListDKIM checks that dkimpy (given records) and go-msgauth
// (asking n's DNS) both pass the two signatures of msg, each by
// lists.example.org, and returns go-msgauth's verifications.
func (n *fakeNet) verifyListDKIM(t *testing.T, py string, records map[string]string, msg []byte) []*msgauth.Verification {
	t.Helper()
	dkimpy.AllPass(t, py, records, msg, 2)
	verifs, err := msgauth.VerifyWithOptions(bytes.NewReader(msg), &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return lookupTXT(n.dns.Addr(), name) },
	})
	if err != nil || len(verifs) != 2 {
		t.Fatalf("go-msgauth: %d verifications, %v", len(verifs), err)
	}
	for _, v := range verifs {
		if v.Err != nil || v.Domain != "lists.example.org" {
			t.Errorf("go-msgauth: d=%s: %v", v.Domain, v.Err)
		}
	}
	return verifs
}

// TestDMARCEndToEnd: with the author's domain publishing p=reject, the
// munge list rewrites From: and the wrap list sends the post as a
// message/rfc822 part; with p=none or no record both send it as it is.
// A multipart/signed post keeps its body byte-identical, footer or not.
func TestDMARCEndToEnd(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test", "lists.example.org"}, nil)
	for _, rr := range []string{
		`_dmarc.reject.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.none.test. 300 IN TXT "v=DMARC1; p=none"`,
	} {
		if err := n.dns.AddRR(rr); err != nil {
			t.Fatal(err)
		}
	}
	cfg := n.newConfig(t, "")
	for _, l := range []string{"munge", "wrap"} {
		openList(t, cfg, l+"@lists.example.org")
		fanmailCLI(t, cfg, "", "member", "add", l+"@lists.example.org", l+"-member@d00.test")
		fanmailCLI(t, cfg, "", "list", "set", l+"@lists.example.org", "dmarc="+l, "footer=-- \n"+l+" list")
	}
	p := startFanmail(t, cfg)
	post := func(author string) string {
		return "From: Author <" + author + ">\r\nTo: list\r\nSubject: from " + author +
			"\r\nDate: Wed, 01 Jul 2026 12:00:00 +0000\r\nMessage-ID: <" + author + ">\r\n\r\nThe text.\r\n"
	}
	for _, author := range []string{"a@reject.test", "a@none.test", "a@norecord.test"} {
		for _, l := range []string{"munge", "wrap"} {
			postTo(t, p.addr, "poster@example.org", l+"@lists.example.org", post(author))
		}
	}
	const signedBody = "--sig\r\nContent-Type: text/plain\r\n\r\nSigned text, trailing space \r\n" +
		"--sig\r\nContent-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\nAAAA\r\n-----END PGP SIGNATURE-----\r\n--sig--\r\n"
	postTo(t, p.addr, "poster@example.org", "munge@lists.example.org",
		"From: a@none.test\r\nSubject: signed\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pgp-signature\";"+
			" micalg=pgp-sha256; boundary=sig\r\n\r\n"+signedBody)

	bySubject := func(rcpt string) map[string][]byte {
		m := map[string][]byte{}
		for _, d := range n.waitMessages(t, rcpt, map[string]int{"munge-member@d00.test": 4, "wrap-member@d00.test": 3}[rcpt], p) {
			e, err := message.Read(bytes.NewReader(d.Data))
			if err != nil {
				t.Fatal(err)
			}
			m[e.Header.Get("Subject")] = d.Data
		}
		return m
	}
	munged, wrapped := bySubject("munge-member@d00.test"), bySubject("wrap-member@d00.test")

	if c := munged["from a@reject.test"]; !bytes.Contains(c, []byte("\r\nFrom: \"Author via munge\" <munge@lists.example.org>\r\n")) ||
		!bytes.Contains(c, []byte("\r\nReply-To: \"Author\" <a@reject.test>\r\n")) || !bytes.Contains(c, []byte("\r\n\r\nThe text.\r\n-- \r\nmunge list\r\n")) {
		t.Errorf("munge, p=reject:\n%s", c)
	}
	c := wrapped["from a@reject.test"]
	if !bytes.Contains(c, []byte("\r\nFrom: \"Author via wrap\" <wrap@lists.example.org>\r\n")) ||
		!bytes.Contains(c, []byte("Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"+post("a@reject.test"))) {
		t.Errorf("wrap, p=reject: the post is not attached intact:\n%s", c)
	}
	e, err := message.Read(bytes.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	if ct, _, _ := e.Header.ContentType(); ct != "multipart/mixed" {
		t.Errorf("wrapped copy is %s", ct)
	}
	for _, author := range []string{"a@none.test", "a@norecord.test"} {
		for l, c := range map[string][]byte{"munge": munged["from "+author], "wrap": wrapped["from "+author]} {
			if !bytes.Contains(c, []byte("\r\nFrom: Author <"+author+">\r\n")) || bytes.Contains(c, []byte("message/rfc822")) {
				t.Errorf("%s, %s: the post should go out as it is:\n%s", l, author, c)
			}
		}
	}
	if c := munged["signed"]; !bytes.HasSuffix(c, []byte("boundary=sig\r\n\r\n"+signedBody)) {
		t.Errorf("multipart/signed body changed:\n%s", c)
	}
	p.stop(t)
}

// TestBadKeyStopsTheStart: a key fanmail cannot use stops `serve` with
// an error naming the file, rather than leaving mail unsigned.
func TestBadKeyStopsTheStart(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test"}, nil)
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := n.writeConfig(t, dataDir, "")
	for name, tt := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"readable":   {"-----BEGIN PRIVATE KEY-----\n", 0o644, "lets group or others read the private key"},
		"unparsable": {"not a key\n", 0o600, "no PEM block"},
	} {
		file := filepath.Join(dataDir, "dkim", "lists.example.org", "s1.key")
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(tt.content), tt.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(file, tt.mode); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(fanmailBinary(t), "--config", cfg, "serve")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), file) || !strings.Contains(string(out), tt.want) {
			t.Errorf("%s key: serve exited with %v:\n%s\nwant an error naming %s: %s", name, err, out, file, tt.want)
		}
	}
}
