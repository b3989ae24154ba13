package render

import (
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	"github.com/google/go-cmp/cmp"

	"fanmail/dmarc"
	"fanmail/lists"
)

const footer = "-- \nannounce mailing list\nunsubscribe: announce-request@lists.example.org\n"

// wantFooter is footer as the copy carries it.
const wantFooter = "-- \r\nannounce mailing list\r\nunsubscribe: announce-request@lists.example.org\r\n"

const footerPartHeader = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n" +
	"Content-Disposition: inline\r\n\r\n"

// partTexts parses a copy with go-message (an independent MIME reader)
// and returns each leaf part's type and decoded text, depth first.
func partTexts(t *testing.T, msg string) []string {
	t.Helper()
	e, err := message.Read(strings.NewReader(msg))
	if err != nil {
		t.Fatalf("go-message cannot read the copy: %v\n%s", err, msg)
	}
	var out []string
	var walk func(e *message.Entity)
	walk = func(e *message.Entity) {
		if mr := e.MultipartReader(); mr != nil {
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatalf("go-message: next part: %v\n%s", err, msg)
				}
				walk(p)
			}
		}
		ct, _, _ := e.Header.ContentType()
		b, err := io.ReadAll(e.Body)
		if err != nil {
			t.Fatalf("go-message: read part: %v", err)
		}
		out = append(out, ct+": "+string(b))
	}
	walk(e)
	return out
}

func TestFooter(t *testing.T) {
	t.Parallel()
	s := lists.DefaultSettings()
	s.Footer = footer
	head := "From: p@example.net\r\nDate: Wed, 01 Jul 2026 11:59:00 +0000\r\nMessage-ID: <p@x>\r\n"
	tests := []struct {
		name       string
		in         string
		wantBody   string   // the copy after its header; "" = check parts only
		wantParts  []string // go-message's reading
		wantFooter bool
	}{
		{name: "plain text, footer appended",
			in:         head + "\r\nhello\r\n",
			wantBody:   "hello\r\n" + wantFooter,
			wantParts:  []string{"text/plain: hello\r\n" + wantFooter},
			wantFooter: true},
		{name: "plain text without a last line end",
			in:         head + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nhello",
			wantBody:   "hello\r\n" + wantFooter,
			wantFooter: true},
		{name: "quoted-printable text is wrapped, never re-encoded",
			in: head + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n",
			wantBody: "This is a multi-part message in MIME format.\r\n--BOUNDARY\r\n" +
				"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				"caf=E9\r\n" +
				"\r\n--BOUNDARY\r\n" + footerPartHeader + wantFooter + "--BOUNDARY--\r\n",
			wantParts:  []string{"text/plain: café\r\n", "text/plain: " + strings.TrimSuffix(wantFooter, "\r\n")},
			wantFooter: true},
		{name: "multipart/mixed gets a new last part",
			in: head + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\npreamble\r\n" +
				"--b1\r\nContent-Type: text/plain\r\n\r\nfirst\r\n" +
				"--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nalt\r\n--b2--\r\n" +
				"--b1--\r\nepilogue\r\n",
			wantBody: "preamble\r\n" +
				"--b1\r\nContent-Type: text/plain\r\n\r\nfirst\r\n" +
				"--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nalt\r\n--b2--\r\n" +
				"--b1\r\n" + footerPartHeader + wantFooter +
				"--b1--\r\nepilogue\r\n",
			wantParts:  []string{"text/plain: first", "text/plain: alt", "text/plain: " + strings.TrimSuffix(wantFooter, "\r\n")},
			wantFooter: true},
		{name: "multipart/alternative is wrapped in a multipart/mixed",
			in: head + "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n" +
				"--b2\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b2\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b2--\r\n",
			wantParts:  []string{"text/plain: plain", "text/html: <p>html</p>", "text/plain: " + strings.TrimSuffix(wantFooter, "\r\n")},
			wantFooter: true},
		{name: "multipart/signed is left byte-identical",
			in: head + "MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha256; boundary=s\r\n\r\n" +
				"--s\r\nContent-Type: text/plain\r\n\r\nsigned text  \r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nSIG\r\n--s--\r\n",
			wantBody: "--s\r\nContent-Type: text/plain\r\n\r\nsigned text  \r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nSIG\r\n--s--\r\n"},
		{name: "S/MIME encrypted is left byte-identical",
			in:       head + "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3\r\n",
			wantBody: "MIAGCSqGSIb3\r\n"},
		{name: "a multipart/mixed without its closing delimiter is left as it is",
			in:       head + "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n\r\ncut off\r\n",
			wantBody: "--b1\r\n\r\ncut off\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, got := render(t, tt.in, s, dmarc.PolicyNone)
			if c.Footer != tt.wantFooter {
				t.Errorf("Footer = %v, want %v", c.Footer, tt.wantFooter)
			}
			body := got[len(c.Header):]
			if tt.wantBody != "" {
				if diff := cmp.Diff(tt.wantBody, body); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			}
			if tt.wantParts != nil {
				if diff := cmp.Diff(tt.wantParts, partTexts(t, got)); diff != "" {
					t.Errorf("parts (-want +got):\n%s", diff)
				}
			}
		})
	}
}

const rejectPost = "From: Poster Name <poster@reject.example>\r\n" +
	"Reply-To: other@example.org\r\n" +
	"To: announce@lists.example.org\r\n" +
	"Subject: hello\r\n" +
	"Date: Wed, 01 Jul 2026 11:59:00 +0000\r\n" +
	"Message-ID: <p1@reject.example>\r\n" +
	"DKIM-Signature: v=1; d=reject.example; b=abc\r\n" +
	"\r\n" +
	"Body.\r\n"

func TestDMARCMunge(t *testing.T) {
	t.Parallel()
	s := lists.DefaultSettings()
	for _, tt := range []struct {
		name   string
		mode   lists.DMARCMode
		policy dmarc.Policy
		munged bool
	}{
		{"p=reject", lists.DMARCMunge, dmarc.PolicyReject, true},
		{"p=quarantine", lists.DMARCMunge, dmarc.PolicyQuarantine, true},
		{"p=none", lists.DMARCMunge, dmarc.PolicyNone, false},
		{"dmarc=none on the list", lists.DMARCNone, dmarc.PolicyReject, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s.DMARC = tt.mode
			c, got := render(t, rejectPost, s, tt.policy)
			if c.Munged != tt.munged {
				t.Fatalf("Munged = %v, want %v", c.Munged, tt.munged)
			}
			info, err := inspect([]byte(got))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.munged {
				if info.From != "poster@reject.example" {
					t.Errorf("From changed: %+v", info)
				}
				return
			}
			if info.From != testList || info.FromName != "Poster Name via announce" {
				t.Errorf("From = %q <%s>, want \"Poster Name via announce\" <%s>", info.FromName, info.From, testList)
			}
			for _, want := range []string{
				"From: \"Poster Name via announce\" <announce@lists.example.org>\r\n",
				"Reply-To: <other@example.org>, \"Poster Name\" <poster@reject.example>\r\n",
				"\r\n\r\nBody.\r\n",
			} {
				if !strings.Contains(got, want) {
					t.Errorf("copy lacks %q:\n%s", want, got)
				}
			}
			if strings.Count(got, "From:") != 1 || strings.Count(got, "Reply-To:") != 1 {
				t.Errorf("From or Reply-To duplicated:\n%s", got)
			}
		})
	}
}

func TestDMARCWrap(t *testing.T) {
	t.Parallel()
	s := lists.DefaultSettings()
	s.DMARC = lists.DMARCWrap
	s.SubjectPrefix = "[announce]"
	s.Footer = footer
	c, got := render(t, rejectPost, s, dmarc.PolicyReject)
	if !c.Wrapped || !c.Munged || !c.Footer || c.Skip != 0 {
		t.Fatalf("copy %+v: want wrapped, munged, with footer, the whole post inside", c)
	}
	wantHeader := listFields + "Precedence: list\r\n" +
		"Subject: [announce] hello\r\n" +
		"Reply-To: <other@example.org>, \"Poster Name\" <poster@reject.example>\r\n" +
		"From: \"Poster Name via announce\" <announce@lists.example.org>\r\n" +
		"Content-Type: multipart/mixed; boundary=BOUNDARY\r\n" +
		"MIME-Version: 1.0\r\n" +
		"To: announce@lists.example.org\r\n" +
		"Date: Wed, 01 Jul 2026 11:59:00 +0000\r\n" +
		"Message-ID: <p1@reject.example>\r\n" +
		"\r\n"
	wantBody := "This is a multi-part message in MIME format.\r\n--BOUNDARY\r\n" +
		"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n" +
		rejectPost +
		"\r\n--BOUNDARY\r\n" + footerPartHeader + wantFooter + "--BOUNDARY--\r\n"
	if diff := cmp.Diff(wantHeader+wantBody, got); diff != "" {
		t.Errorf("copy (-want +got):\n%s", diff)
	}
	parts := partTexts(t, got)
	if len(parts) != 2 || parts[0] != "message/rfc822: "+rejectPost {
		t.Errorf("go-message reads parts %q, want the post intact, then the footer", parts)
	}
	// Without a strict policy the same list sends the post as it is.
	c, _ = render(t, rejectPost, s, dmarc.PolicyNone)
	if c.Wrapped || c.Munged || c.Skip == 0 {
		t.Errorf("wrapped with no DMARC policy: %+v", c)
	}
}
