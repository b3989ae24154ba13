package dkim

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
	"github.com/google/go-cmp/cmp"
)

// signCase is a message to sign: header (every line ended, no blank
// line), the blank line, and the body.
type signCase struct {
	name   string
	header string
	sep    string // the blank line: "\r\n", or "\n" for a bare-LF message
	body   string
	wantH  string // the h= list
	// noDkimpy says why dkimpy (python3-dkim) cannot check the case.
	noDkimpy string
}

const basicHeader = "From: Alice <alice@example.org>\r\n" +
	"To: announce@lists.example.org\r\n" +
	"Subject: hello\r\n" +
	"Date: Wed, 01 Jul 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n"

const basicH = "from:from:to:subject:date:message-id"

var signCases = []signCase{
	{name: "basic", header: basicHeader, sep: "\r\n", body: "Hello, world.\r\n", wantH: basicH},
	{
		name: "folded fields",
		header: "From: Alice\r\n <alice@example.org>\r\n" +
			"To: a@example.net,\r\n\tb@example.net,\r\n   c@example.net\r\n" +
			"Subject: a subject that goes on\r\n\tand on\r\n\t\tand on\r\n" +
			"List-Unsubscribe: <https://lists.example.org/u/1>,\r\n <mailto:announce-request@lists.example.org?subject=unsubscribe>\r\n" +
			"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
		sep: "\r\n", body: "Body.\r\n",
		wantH: "from:from:to:subject:list-unsubscribe:list-unsubscribe-post",
	},
	{
		name: "odd whitespace",
		header: "from:bob@example.org\r\n" +
			"TO: \t  x@example.net  \t\r\n" +
			"SuBjEcT:  lots   of\t\tspace   inside \r\n" +
			"Date:\r\n\tWed, 01 Jul 2026 12:00:00 +0000\r\n" +
			"X-Empty:\r\n" +
			"Message-ID:\t<2@example.org>\t\r\n",
		sep: "\r\n", body: "  leading space\r\ntrailing space   \r\n\ttab\t \tin  the middle\r\n",
		wantH: "from:from:to:subject:date:message-id",
	},
	{
		name:   "space before colon",
		header: "From : bob@example.org\r\nSubject\t: obsolete syntax (RFC 5322 §4.5)\r\n",
		sep:    "\r\n", body: "x\r\n", wantH: "from:from:subject",
		noDkimpy: "dkimpy does not parse whitespace before a colon: it takes \"From :\" for an mbox From_ line and skips it, and rejects other such fields",
	},
	{name: "empty body", header: basicHeader, sep: "\r\n", body: "", wantH: basicH},
	{name: "body without final CRLF", header: basicHeader, sep: "\r\n", body: "line one\r\nlast line", wantH: basicH},
	{name: "body of blank lines", header: basicHeader, sep: "\r\n", body: "\r\n\r\n \t\r\n\r\n", wantH: basicH},
	{name: "trailing blank lines", header: basicHeader, sep: "\r\n", body: "text\r\n\r\n\r\n", wantH: basicH},
	{
		name: "repeated fields",
		header: "Received: from a by b; Wed, 01 Jul 2026 12:00:02 +0000\r\n" +
			"Received: from c by a; Wed, 01 Jul 2026 12:00:01 +0000\r\n" +
			"From: carol@example.org\r\n" +
			"To: first@example.net\r\n" +
			"Cc: c1@example.net\r\n" +
			"To: second@example.net\r\n" +
			"Subject: two To lines\r\n",
		sep: "\r\n", body: "x\r\n",
		wantH: "from:from:to:to:cc:subject",
	},
	{
		name: "every signed field",
		header: "Return-Path: <owner-announce@lists.example.org>\r\n" +
			basicHeader +
			"Cc: cc@example.net\r\n" +
			"Reply-To: announce@lists.example.org\r\n" +
			"List-Id: Announcements <announce.lists.example.org>\r\n" +
			"List-Post: <mailto:announce@lists.example.org>\r\n" +
			"List-Help: <mailto:announce-request@lists.example.org?subject=help>\r\n" +
			"List-Subscribe: <mailto:announce-request@lists.example.org?subject=subscribe>\r\n" +
			"List-Unsubscribe: <mailto:announce-request@lists.example.org?subject=unsubscribe>\r\n" +
			"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
			"List-Archive: <https://lists.example.org/announce/>\r\n" +
			"MIME-Version: 1.0\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Transfer-Encoding: 8bit\r\n",
		sep: "\r\n", body: "Grüße\r\n",
		wantH: "from:from:to:cc:subject:date:message-id:reply-to:list-id:list-post:list-help:list-subscribe:list-unsubscribe:list-unsubscribe-post:list-archive:mime-version:content-type",
	},
	{
		name:   "UTF-8 header (SMTPUTF8)",
		header: "From: Jörg <jörg@bücher.example>\r\nSubject: Größe\r\n",
		sep:    "\r\n", body: "ä\r\n", wantH: "from:from:subject",
	},
	{
		name:   "bare LF line ends",
		header: strings.ReplaceAll(basicHeader, "\r\n", "\n") + "Subject2: x\n\tfolded\n",
		sep:    "\n", body: "one\ntwo  \n\n", wantH: basicH,
	},
}

func TestSignVerifiesWithGoMsgauth(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	recs := records(kr)
	for _, tc := range signCases {
		for _, domain := range []string{rsaDomain, edDomain, dualDomain} {
			t.Run(tc.name+"/"+domain, func(t *testing.T) {
				bh, err := HashBody(strings.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				sig, err := kr.For(domain).Sign([]byte(tc.header), bh)
				if err != nil {
					t.Fatal(err)
				}
				errs := verifyGo(t, bytes.NewReader(signed(sig, tc.header, tc.sep, tc.body)), recs)
				if want := len(kr.For(domain).Keys()); len(errs) != want {
					t.Fatalf("%d signatures verified, want %d:\n%s", len(errs), want, sig)
				}
				for i, err := range errs {
					if err != nil {
						t.Errorf("signature %d: %v\n%s", i+1, err, sig)
					}
				}
				for _, h := range regexp.MustCompile(`[;\s]h=([^;]*);`).FindAllStringSubmatch(sig, -1) {
					if got := strings.Join(strings.Fields(h[1]), ""); got != tc.wantH {
						t.Errorf("h=%s, want h=%s", got, tc.wantH)
					}
				}
			})
		}
	}
}

// TestSignatureForm checks the field itself: tags, algorithms, line
// lengths, and that each field is one header field ending in CRLF.
func TestSignatureForm(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	bh, _ := HashBody(strings.NewReader("Hello, world.\r\n"))
	sig, err := kr.For("EXAMPLE.ORG").Sign([]byte(basicHeader), bh)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.SplitAfter(strings.TrimSuffix(sig, "\r\n"), "\r\nDKIM-Signature:")
	if len(fields) != 2 || !strings.HasPrefix(sig, "DKIM-Signature: v=1;") || !strings.HasSuffix(sig, "\r\n") {
		t.Fatalf("want two DKIM-Signature fields ending in CRLF, got:\n%s", sig)
	}
	for _, line := range strings.Split(strings.TrimSuffix(sig, "\r\n"), "\r\n") {
		if len(line) > lineMax {
			t.Errorf("line of %d characters (max %d): %q", len(line), lineMax, line)
		}
		if strings.ContainsAny(line, "\r\n") {
			t.Errorf("bare CR or LF in %q", line)
		}
	}
	unfolded := regexp.MustCompile(`\r\n[ \t]+`).ReplaceAllString(sig, " ")
	for i, want := range []string{
		"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=fm2026a; t=1782907200; h=from:from:to:subject:date:message-id; bh=" + bh.String() + "; b=",
		"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.org; s=fm2026b; t=1782907200; h=from:from:to:subject:date:message-id; bh=" + bh.String() + "; b=",
	} {
		got := strings.Split(unfolded, "\r\n")[i]
		if !strings.HasPrefix(got, want) {
			t.Errorf("signature %d:\n got %s\nwant %s...", i+1, got, want)
		}
	}
}

// TestSignTampering changes a signed message after signing: what is
// covered breaks the signature, what is not leaves it valid.
func TestSignTampering(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	recs := records(kr)
	header := "Received: from a by b; Wed, 01 Jul 2026 12:00:02 +0000\r\n" +
		"Received: from c by a; Wed, 01 Jul 2026 12:00:01 +0000\r\n" +
		"From: carol@example.org\r\n" +
		"To: first@example.net\r\n" +
		"To: second@example.net\r\n" +
		"Subject: tamper\r\n"
	body := "Body.\r\n"
	tests := []struct {
		name   string
		change func(h, b string) (string, string)
		valid  bool
	}{
		{"unchanged", func(h, b string) (string, string) { return h, b }, true},
		{"refolded and respaced", func(h, b string) (string, string) {
			return strings.Replace(h, "Subject: tamper", "Subject:\r\n\t  tamper  ", 1), strings.Replace(b, "Body.", "Body.  ", 1)
		}, true},
		{"a Received added", func(h, b string) (string, string) { return "Received: from evil by c\r\n" + h, b }, true},
		{"the first Received changed", func(h, b string) (string, string) { return strings.Replace(h, "from a by b", "from x by y", 1), b }, true},
		{"the first To changed", func(h, b string) (string, string) { return strings.Replace(h, "first@", "evil@", 1), b }, false},
		{"the second To changed", func(h, b string) (string, string) { return strings.Replace(h, "second@", "evil@", 1), b }, false},
		// To is not over-signed: verifiers take the last fields of a name
		// (§5.4.2), so one added on top goes unnoticed; one added at the
		// bottom takes a signed one's place.
		{"a third To added on top", func(h, b string) (string, string) { return "To: evil@example.net\r\n" + h, b }, true},
		{"a third To added at the bottom", func(h, b string) (string, string) { return h + "To: evil@example.net\r\n", b }, false},
		{"a From added on top", func(h, b string) (string, string) { return "From: ceo@example.org\r\n" + h, b }, false},
		{"a From added at the bottom", func(h, b string) (string, string) { return h + "From: ceo@example.org\r\n", b }, false},
		{"the subject changed", func(h, b string) (string, string) { return strings.Replace(h, "tamper", "tampered", 1), b }, false},
		{"the body changed", func(h, b string) (string, string) { return h, "Body!\r\n" }, false},
		{"a List-Id added", func(h, b string) (string, string) { return h + "List-Id: <x.example.org>\r\n", b }, true},
	}
	for _, domain := range []string{rsaDomain, edDomain} {
		bh, _ := HashBody(strings.NewReader(body))
		sig, err := kr.For(domain).Sign([]byte(header), bh)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(domain+"/"+tt.name, func(t *testing.T) {
				h, b := tt.change(header, body)
				errs := verifyGo(t, bytes.NewReader(signed(sig, h, "\r\n", b)), recs)
				if valid := errs[0] == nil; valid != tt.valid {
					t.Errorf("valid = %v (%v), want %v", valid, errs[0], tt.valid)
				}
			})
		}
	}
}

// TestSignHeader checks that signing a go-message header signs what
// textproto.WriteHeader writes, including fields it folds itself.
func TestSignHeader(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	br := bufio.NewReader(strings.NewReader(basicHeader + "\r\n"))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	h.Add("List-Id", "A list whose description is long enough that go-message folds the field <announce.lists.example.org>")
	h.Add("To", "second@example.net")
	bh, _ := HashBody(strings.NewReader("x\r\n"))
	sig, err := kr.For(edDomain).SignHeader(h, bh)
	if err != nil {
		t.Fatal(err)
	}
	var msg bytes.Buffer
	msg.WriteString(sig)
	if err := textproto.WriteHeader(&msg, h); err != nil {
		t.Fatal(err)
	}
	msg.WriteString("x\r\n")
	if errs := verifyGo(t, &msg, records(kr)); errs[0] != nil {
		t.Errorf("%v\n%s", errs[0], msg.String())
	}
	if !strings.Contains(sig, "h=from:from:to:to:subject:date:message-id:list-id;") {
		t.Errorf("h= does not cover the added fields:\n%s", sig)
	}
}

func TestSignErrors(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	bh, _ := HashBody(strings.NewReader("x\r\n"))
	tests := []struct {
		name, header string
		bh           BodyHash
		want         string
	}{
		{"no From", "To: a@example.net\r\nSubject: x\r\n", bh, "no From field"},
		{"no body hash", basicHeader, BodyHash{}, "no body hash"},
		{"leading continuation", " folded\r\n" + basicHeader, bh, "line 1: a continuation line"},
		{"no colon", basicHeader + "garbage line\r\n", bh, "line 6: no colon"},
		{"empty name", basicHeader + ": value\r\n", bh, "line 6: empty field name"},
		{"space in name", "From: a@example.org\r\nX Bad: v\r\n", bh, "line 2: field name \"X Bad\" has a byte outside printable ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := kr.For(rsaDomain).Sign([]byte(tt.header), tt.bh)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	var none *Signer
	if sig, err := none.Sign([]byte(basicHeader), bh); sig != "" || err != nil {
		t.Errorf("nil signer: %q, %v; want nothing", sig, err)
	}
}

// TestSignStopsAtBlankLine checks that a whole message may be given:
// fields after the blank line are body, not header.
func TestSignStopsAtBlankLine(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	bh, _ := HashBody(strings.NewReader("To: not-a-field@example.net\r\n"))
	whole, err := kr.For(edDomain).Sign([]byte(basicHeader+"\r\nTo: not-a-field@example.net\r\n"), bh)
	if err != nil {
		t.Fatal(err)
	}
	header, err := kr.For(edDomain).Sign([]byte(basicHeader), bh)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(header, whole); diff != "" {
		t.Errorf("(-header only +whole message):\n%s", diff)
	}
}

func TestRelaxedHeader(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Subject: hello\r\n", "subject:hello\r\n"},
		{"SUBJECT :  a   b\t\tc  \r\n", "subject:a b c\r\n"},
		{"To: a,\r\n\tb,\r\n   c\r\n", "to:a, b, c\r\n"},
		{"X-Empty:\r\n", "x-empty:\r\n"},
		{"X-Empty:   \r\n  \r\n", "x-empty:\r\n"},
		{"X-Lf: a\n b\n", "x-lf:a b\r\n"},
		{"X-Cr: a\rb\r\n", "x-cr:a\rb\r\n"},
		{"X-Utf8: Grüße  \r\n", "x-utf8:Grüße\r\n"},
		{"X-Last: no line end", "x-last:no line end\r\n"},
	}
	for _, tt := range tests {
		fields, err := parseHeader([]byte(tt.in))
		if err != nil || len(fields) != 1 {
			t.Fatalf("parse %q: %v, %d fields", tt.in, err, len(fields))
		}
		if got := string(appendRelaxed(nil, fields[0])); got != tt.want {
			t.Errorf("relaxed(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzSign signs arbitrary header blocks: Sign either refuses the header
// or makes a signature that go-msgauth verifies.
func FuzzSign(f *testing.F) {
	for _, tc := range signCases {
		f.Add(tc.header, tc.body)
	}
	kr := testKeyring(f)
	recs := records(kr)
	f.Fuzz(func(t *testing.T, header, body string) {
		if !strings.HasSuffix(header, "\n") || strings.Contains(header, "\n\n") || strings.Contains(header, "\n\r\n") ||
			strings.HasPrefix(header, "\n") || strings.HasPrefix(header, "\r\n") {
			return // not one whole header block: the message would not be what was signed
		}
		if loneCR(header) || loneCR(body) {
			return // verifiers disagree on a CR that ends no line (see TestBodyHashMatchesGoMsgauth)
		}
		bh, err := HashBody(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		sig, err := kr.For(edDomain).Sign([]byte(header), bh)
		if err != nil {
			return // refused: fine, as long as what is signed verifies
		}
		msg := signed(sig, header, "\r\n", body)
		if errs := verifyGo(t, bytes.NewReader(msg), recs); errs[0] != nil {
			t.Errorf("%v\n%q", errs[0], msg)
		}
	})
}

// loneCR reports whether s has a CR not followed by LF.
func loneCR(s string) bool {
	return strings.Contains(strings.ReplaceAll(s, "\r\n", ""), "\r")
}

// TestSignConcurrent signs from many goroutines at once, as delivery
// does: both algorithms' signatures are deterministic, so every copy of
// the same header must get the same fields (and -race must stay quiet).
func TestSignConcurrent(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	bh, _ := HashBody(strings.NewReader("x\r\n"))
	s := kr.For(dualDomain)
	want, err := s.Sign([]byte(basicHeader), bh)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 10 {
				got, err := s.Sign([]byte(basicHeader), bh)
				if err == nil && got != want {
					err = fmt.Errorf("signatures differ:\n%s\n%s", got, want)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestSignMessage: a whole message comes back with its signatures in
// front, verifying; a nil Signer leaves it as it is; a message without
// the blank line after its header is an error.
func TestSignMessage(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	msg := []byte("From: list@" + rsaDomain + "\r\nTo: a@example.net\r\nSubject: notice\r\n\r\nhello\r\n")
	out, err := kr.For(rsaDomain).SignMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte("DKIM-Signature: ")) || !bytes.HasSuffix(out, msg) {
		t.Fatalf("signed message:\n%s", out)
	}
	errs := verifyGo(t, bytes.NewReader(out), records(kr))
	if len(errs) != 1 || errs[0] != nil {
		t.Errorf("verification: %v", errs)
	}
	var none *Signer
	if got, err := none.SignMessage(msg); err != nil || !bytes.Equal(got, msg) {
		t.Errorf("nil Signer: %q, %v; want the message unchanged", got, err)
	}
	if _, err := kr.For(rsaDomain).SignMessage([]byte("From: x@" + rsaDomain + "\r\n")); err == nil {
		t.Error("a message without the end of its header was signed")
	}
}
