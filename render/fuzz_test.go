package render

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"fanmail/dmarc"
	"fanmail/envelope"
	"fanmail/lists"
)

// FuzzRender renders arbitrary posts with every option on: no panic,
// the copy is as long as Size says, and the post's bytes the copy keeps
// (from Skip) appear in it unchanged.
func FuzzRender(f *testing.F) {
	for _, seed := range []string{plainPost, rejectPost,
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
		"Content-Type: multipart/signed; boundary=s\r\n\r\n--s--\r\n",
		"Content-Type: text/plain; charset=utf-16\r\n\r\nx",
		"Subject: =?bogus?q?x?=\r\nFrom: <>\r\n\r\n",
		"From: a@b\r\n", "\r\nno header\r\n", ""} {
		f.Add(seed, "[p]", "foot", true)
	}
	f.Fuzz(func(t *testing.T, msg, prefix, foot string, wrap bool) {
		s := lists.DefaultSettings()
		if lists.CheckSetting("subject_prefix", prefix) == nil {
			s.SubjectPrefix = prefix
		}
		if lists.CheckSetting("footer", foot) == nil {
			s.Footer = foot
		}
		if wrap {
			s.DMARC = lists.DMARCWrap
		}
		p := splitPost(msg)
		c, err := Render(p, List{Address: testList, Settings: s}, Options{Hostname: "h.test", DMARC: dmarc.PolicyReject})
		if err != nil {
			return
		}
		out, err := io.ReadAll(c.Reader(p.Body, p.Size))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(out)) != c.Size(p.Size) {
			t.Fatalf("Size %d, copy %d bytes", c.Size(p.Size), len(out))
		}
		kept := msg[c.Skip:c.InsertAt]
		if !bytes.Contains(out, []byte(kept)) || !strings.HasSuffix(string(out), msg[c.InsertAt:]) {
			t.Fatalf("the post's bytes are not kept intact")
		}
	})
}

// FuzzTemplate: a per-member template that decodes round-trips through
// encode, and Members never panics on what decodes.
func FuzzTemplate(f *testing.F) {
	f.Add(personalTemplate{list: testList}.encode())
	f.Add(personalTemplate{list: testList, domain: "lists.example.org", header: []byte("From: a@b\r\n\r\n")}.encode())
	f.Add([]byte{templateFormat, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		tmpl, err := decodeTemplate(b)
		if err != nil {
			return
		}
		again, err := decodeTemplate(tmpl.encode())
		if err != nil || again.list != tmpl.list || again.domain != tmpl.domain || again.bh != tmpl.bh || !bytes.Equal(again.header, tmpl.header) {
			t.Fatalf("template %q does not round trip: %v", b, err)
		}
		for _, mode := range []envelope.Personalize{envelope.PersonalizeVERP, envelope.PersonalizeFull} {
			_, _ = (&Members{}).Member(envelope.Personal{Mode: mode, Template: b}, "l-bounces@x.test", "m@y.test")
		}
	})
}
