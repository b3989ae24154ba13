package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"fanmail/envelope"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
	"github.com/google/go-cmp/cmp"
)

const original = "Message-ID: <m1@list.test>\r\nFrom: Owner <owner@list.test>\r\nSubject: hello\r\n\r\nbody that must not be returned\r\n"

func report() Report {
	at := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	return Report{
		ReportingMTA: "fanmail.test",
		To:           "owner@list.test",
		EnvelopeID:   "Q123",
		ArrivalDate:  at,
		Date:         at.Add(time.Hour),
		MessageID:    "dsn1@fanmail.test",
		Header:       []byte(original),
		Recipients: []Recipient{
			{FinalRecipient: "gone@example.test", Action: Failed, LastAttempt: at.Add(time.Minute),
				Reply: envelope.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such\r\nuser", Host: "mx1.example.test"}},
			{FinalRecipient: "nowhere@null.test", Action: Failed,
				Reply: envelope.Reply{Enhanced: "5.1.10", Text: "domain null.test does not accept mail (null MX)"}},
			{FinalRecipient: "slow@example.test", OriginalRecipient: "Slow@Example.test", Action: Delayed, WillRetryUntil: at.Add(5 * 24 * time.Hour),
				Reply: envelope.Reply{Code: 452, Enhanced: "4.2.2", Text: "mailbox full", Host: "mx1.example.test"}},
		},
	}
}

// parsed is what a reader of the DSN sees; keys are in go-message's
// canonical form (Reporting-Mta).
type parsed struct {
	Header      map[string]string
	Types       []string
	Human       string
	PerMessage  map[string]string
	PerRcpt     []map[string]string
	OrigHeaders string
}

func parse(t *testing.T, b []byte) parsed {
	t.Helper()
	e, err := message.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("read DSN: %v\n%s", err, b)
	}
	var p parsed
	p.Header = map[string]string{}
	for _, k := range []string{"From", "To", "Subject", "Message-Id", "Auto-Submitted", "Date", "Mime-Version"} {
		p.Header[k] = e.Header.Get(k)
	}
	ct, params, _ := e.Header.ContentType()
	p.Types = append(p.Types, ct+";report-type="+params["report-type"])
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatal("DSN is not multipart")
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := part.Header.ContentType()
		p.Types = append(p.Types, ct)
		body, _ := io.ReadAll(part.Body)
		switch ct {
		case "text/plain":
			p.Human = string(body)
		case "message/delivery-status", "message/global-delivery-status":
			br := bufio.NewReader(bytes.NewReader(body))
			for {
				h, err := textproto.ReadHeader(br)
				if err != nil {
					t.Fatalf("delivery-status block: %v\n%s", err, body)
				}
				m := map[string]string{}
				for f := h.Fields(); f.Next(); {
					m[f.Key()] = f.Value()
				}
				if p.PerMessage == nil {
					p.PerMessage = m
				} else {
					p.PerRcpt = append(p.PerRcpt, m)
				}
				if _, err := br.Peek(1); err != nil {
					break
				}
			}
		case "text/rfc822-headers", "message/global-headers":
			p.OrigHeaders = string(body)
		}
	}
	return p
}

func TestComposeParsesBack(t *testing.T) {
	t.Parallel()
	b, err := Compose(report())
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, b)
	want := parsed{
		Header: map[string]string{
			"From": "Mail Delivery System <MAILER-DAEMON@fanmail.test>", "To": "<owner@list.test>",
			"Subject": "Delivery Status Notification", "Message-Id": "<dsn1@fanmail.test>",
			"Auto-Submitted": "auto-replied", "Date": "Wed, 25 Nov 2026 07:00:00 +0000", "Mime-Version": "1.0",
		},
		Types: []string{"multipart/report;report-type=delivery-status", "text/plain", "message/delivery-status", "text/rfc822-headers"},
		PerMessage: map[string]string{
			"Reporting-Mta": "dns; fanmail.test", "Original-Envelope-Id": "Q123", "Arrival-Date": "Wed, 25 Nov 2026 06:00:00 +0000",
		},
		PerRcpt: []map[string]string{
			{"Final-Recipient": "rfc822; gone@example.test", "Action": "failed", "Status": "5.1.1",
				"Remote-Mta": "dns; mx1.example.test", "Diagnostic-Code": "smtp; 550 5.1.1 no such user",
				"Last-Attempt-Date": "Wed, 25 Nov 2026 06:01:00 +0000"},
			{"Final-Recipient": "rfc822; nowhere@null.test", "Action": "failed", "Status": "5.1.10"},
			{"Original-Recipient": "rfc822; Slow@Example.test", "Final-Recipient": "rfc822; slow@example.test",
				"Action": "delayed", "Status": "4.2.2", "Remote-Mta": "dns; mx1.example.test",
				"Diagnostic-Code": "smtp; 452 4.2.2 mailbox full", "Will-Retry-Until": "Mon, 30 Nov 2026 06:00:00 +0000"},
		},
		OrigHeaders: "Message-ID: <m1@list.test>\r\nFrom: Owner <owner@list.test>\r\nSubject: hello\r\n",
	}
	human := p.Human
	p.Human = ""
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("parsed DSN (-want +got):\n%s\n%s", diff, b)
	}
	for _, s := range []string{"<gone@example.test>: failed, host mx1.example.test said", "550 5.1.1 no such user",
		"null MX", "<slow@example.test>: delayed"} {
		if !strings.Contains(human, s) {
			t.Errorf("human-readable part lacks %q:\n%s", s, human)
		}
	}
	if bytes.Contains(b, []byte("body that must not be returned")) {
		t.Error("the original body leaked into the DSN")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasSuffix(line, "\r") && line != "" {
			t.Fatalf("bare LF line %q", line)
		}
	}
}

func TestComposeSubject(t *testing.T) {
	t.Parallel()
	r := report()
	r.Recipients = r.Recipients[:2]
	b, err := Compose(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := parse(t, b).Header["Subject"]; got != "Undelivered Mail Returned to Sender" {
		t.Errorf("subject = %q", got)
	}
	r.Recipients = report().Recipients[2:]
	b, _ = Compose(r)
	if got := parse(t, b).Header["Subject"]; got != "Delayed Mail (still being retried)" {
		t.Errorf("subject = %q", got)
	}
}

func TestComposeRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*Report)
	}{
		{"null sender", func(r *Report) { r.To = "" }},
		{"null sender in brackets", func(r *Report) { r.To = "<>" }},
		{"no recipients", func(r *Report) { r.Recipients = nil }},
		{"no reporting MTA", func(r *Report) { r.ReportingMTA = "" }},
		{"bad action", func(r *Report) { r.Recipients[0].Action = "bounced" }},
		{"recipient without address", func(r *Report) { r.Recipients[0].FinalRecipient = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := report()
			tt.change(&r)
			if _, err := Compose(r); err == nil {
				t.Error("Compose accepted it")
			}
		})
	}
	r := report()
	r.To = "<>"
	if _, err := Compose(r); !errors.Is(err, ErrNullSender) {
		t.Errorf("null sender error = %v, want ErrNullSender", err)
	}
	r.To = "MAILER-DAEMON@fanmail.test"
	if _, err := Compose(r); !errors.Is(err, ErrUnwanted) {
		t.Errorf("DSN to MAILER-DAEMON: error = %v, want ErrUnwanted", err)
	}
}

// Wanted is the sanity check on where a DSN may go.
func TestWanted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sender string
		want   bool
	}{
		{"owner-news@lists.example.org", true},
		{"<owner-news@lists.example.org>", true},
		{"postmaster@example.org", true},
		{"", false},
		{"<>", false},
		{" <> ", false},
		{"MAILER-DAEMON@fanmail.test", false},
		{"<mailer-daemon@example.org>", false},
		{"owner-news", false},
		{"a@b@c", false},
		{"victim@example.org\r\nBcc: x@example.org", false},
	}
	for _, tt := range tests {
		if got := Wanted(tt.sender); got != tt.want {
			t.Errorf("Wanted(%q) = %v, want %v", tt.sender, got, tt.want)
		}
	}
}

// A DSN returns the original header, never the body, and at most
// MaxHeaderBytes of it, cut after a whole line.
func TestHeaderBounded(t *testing.T) {
	t.Parallel()
	var msg strings.Builder
	for i := 0; msg.Len() < 3*MaxHeaderBytes; i++ {
		fmt.Fprintf(&msg, "X-Filler-%d: %s\r\n", i, strings.Repeat("y", 90))
	}
	msg.WriteString("\r\n" + strings.Repeat("body that must not be returned\r\n", 1000))
	h, err := HeaderOf(strings.NewReader(msg.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(h) > MaxHeaderBytes+1 {
		t.Errorf("HeaderOf read %d bytes of header, want at most %d", len(h), MaxHeaderBytes+1)
	}
	r := report()
	r.Header = h
	b, err := Compose(r)
	if err != nil {
		t.Fatal(err)
	}
	got := parse(t, b).OrigHeaders
	if len(got) > MaxHeaderBytes || len(got) < MaxHeaderBytes-200 {
		t.Errorf("returned %d bytes of header, want just under %d", len(got), MaxHeaderBytes)
	}
	if !strings.HasSuffix(got, strings.Repeat("y", 90)+"\r\n") {
		t.Errorf("header not cut after a whole line: ...%q", got[max(0, len(got)-100):])
	}
	if bytes.Contains(b, []byte("body that must not be returned")) {
		t.Error("the original body leaked into the DSN")
	}
}

func TestHeaderOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		original:                   "Message-ID: <m1@list.test>\r\nFrom: Owner <owner@list.test>\r\nSubject: hello\r\n",
		"A: 1\nB: 2\n\nbody\n":     "A: 1\nB: 2\n",
		"A: 1\r\n":                 "A: 1\r\n",
		"Only: header, no newline": "Only: header, no newline",
	} {
		got, err := HeaderOf(strings.NewReader(in))
		if err != nil || string(got) != want {
			t.Errorf("HeaderOf(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestComposeUTF8Recipient(t *testing.T) {
	t.Parallel()
	r := report()
	r.Recipients = []Recipient{{FinalRecipient: "ünï@example.test", Action: Failed, Reply: envelope.Reply{Code: 550, Enhanced: "5.1.1", Text: "no"}}}
	b, err := Compose(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, b)
	if got := p.PerRcpt[0]["Final-Recipient"]; got != "utf-8; ünï@example.test" {
		t.Errorf("Final-Recipient = %q", got)
	}
	if p.Types[2] != "message/global-delivery-status" || p.Types[3] != "text/rfc822-headers" {
		t.Errorf("part types = %q, want the global delivery status (RFC 6533)", p.Types)
	}
}

// TestStatusDefaultsToClass: a reply without an enhanced code is reported
// with the generic code of the recipient's class (RFC 3463 §3.1: X.0.0).
func TestStatusDefaultsToClass(t *testing.T) {
	t.Parallel()
	r := report()
	r.Recipients = []Recipient{
		{FinalRecipient: "gone@example.test", Action: Failed, Reply: envelope.Reply{Code: 550, Text: "no such user"}},
		{FinalRecipient: "slow@example.test", Action: Delayed, Reply: envelope.Reply{Text: "connect: refused"}},
	}
	b, err := Compose(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, b)
	for i, want := range []string{"5.0.0", "4.0.0"} {
		if got := p.PerRcpt[i]["Status"]; got != want {
			t.Errorf("recipient %d: Status %q, want %q", i, got, want)
		}
	}
}
