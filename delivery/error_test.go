package delivery

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestErrorAs(t *testing.T) {
	t.Parallel()
	cause := &tlsError{io.ErrUnexpectedEOF}
	err := fmt.Errorf("deliver: %w", localError(false, "4.7.5", "STARTTLS", "127.0.0.1:25", cause, "TLS handshake failed"))
	var de *Error
	if !errors.As(err, &de) || de.Permanent || de.Enhanced != "4.7.5" || de.Command != "STARTTLS" {
		t.Fatalf("errors.As = %+v", de)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Error("cause not reachable with errors.Is")
	}
	var te *tlsError
	if !errors.As(err, &te) {
		t.Error("tlsError not reachable with errors.As")
	}
	r := replyError("RCPT TO", 550, "5.1.1 no such user", "127.0.0.1:25")
	if !r.Permanent || r.Code != 550 || r.Enhanced != "5.1.1" || r.Line != "no such user" || r.status() != Failed {
		t.Errorf("replyError = %+v", r)
	}
	if got, want := r.Error(), "RCPT TO: 550 5.1.1 no such user"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestSplitEnhanced(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][2]string{
		"2.0.0 OK: queued":  {"2.0.0", "OK: queued"},
		"5.1.1 no":          {"5.1.1", "no"},
		"4.7.500 busy":      {"4.7.500", "busy"},
		"no code here":      {"", "no code here"},
		"1.2.3 wrong class": {"", "1.2.3 wrong class"},
		"2.0 short":         {"", "2.0 short"},
		"":                  {"", ""},
	} {
		enh, text := splitEnhanced(in)
		if enh != want[0] || text != want[1] {
			t.Errorf("splitEnhanced(%q) = %q, %q; want %q, %q", in, enh, text, want[0], want[1])
		}
	}
}

func TestParseReplyMultiline(t *testing.T) {
	t.Parallel()
	enh, text := parseReply("5.7.1 The user or domain that you are sending to\n5.7.1 does not accept mail\nfrom you")
	if enh != "5.7.1" || text != "The user or domain that you are sending to does not accept mail from you" {
		t.Errorf("parseReply = %q, %q", enh, text)
	}
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"2.0.0 OK", "5.1.1 a\n5.1.1 b", "", "4.", "9.9.9 x", "5.1.1", "\n\n", "5.1.1 x\nnot coded"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		enh, text := parseReply(msg)
		if enh != "" {
			if e, _ := splitEnhanced(enh + " x"); e != enh {
				t.Errorf("enhanced code %q from %q does not parse again", enh, msg)
			}
		}
		_ = text
	})
}
