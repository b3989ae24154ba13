package bounces

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func dsnWith(n int) string {
	var b strings.Builder
	b.WriteString("From: MAILER-DAEMON@mx.example.net\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n" +
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "\r\nFinal-Recipient: rfc822; user%d@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n", i)
	}
	b.WriteString("\r\n--B--\r\n")
	return b.String()
}

func TestLimits(t *testing.T) {
	nested := "From: MAILER-DAEMON@mx.example.net\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
	for i := 1; i <= 20; i++ {
		nested += fmt.Sprintf("--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i-1, i)
	}
	manyParts := "From: MAILER-DAEMON@mx.example.net\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		strings.Repeat("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n", 200) + "--b--\r\n"
	for _, tc := range []struct {
		name       string
		msg        string
		recipients int
		truncated  bool
	}{
		{"within bounds", dsnWith(3), 3, false},
		{"too many recipients", dsnWith(maxRecipients + 50), maxRecipients, true},
		{"too deep", nested, 0, true},
		{"too many parts", manyParts, 0, true},
		{"too long", dsnWith(2) + strings.Repeat("x", maxInput), 2, true},
		{"long diagnostic", strings.Replace(dsnWith(1), "Status: 5.1.1", "Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 "+
			strings.Repeat("very long ", 2000), 1), 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Parse(strings.NewReader(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Recipients) != tc.recipients || rep.Truncated != tc.truncated {
				t.Errorf("%d recipients, truncated %v; want %d, %v", len(rep.Recipients), rep.Truncated, tc.recipients, tc.truncated)
			}
			for _, rc := range rep.Recipients {
				checkRecipient(t, rc)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestParseReadError(t *testing.T) {
	_, err := Parse(io.MultiReader(strings.NewReader("From: x\r\n"), failingReader{}))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Parse = %v, want the reader's error", err)
	}
}

// TestGarbage feeds inputs that are not messages at all.
func TestGarbage(t *testing.T) {
	for _, s := range []string{
		"", "\x00\x01\x02", "no header at all", "From: a\r\n", "Content-Type: multipart/report; boundary=\r\n\r\n--\r\n",
		"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: ;\r\n",
		"Content-Type: text/plain; charset=x-unknown\r\nContent-Transfer-Encoding: x-weird\r\n\r\nThis is the qmail-send program at x.\n<a@example.com>:\n(#5.1.1)\n",
		"\xff\xfe<\xff@\xff>:\n",
	} {
		rep, err := Parse(strings.NewReader(s))
		if err != nil {
			t.Errorf("Parse(%q): %v", s, err)
		}
		for _, rc := range rep.Recipients {
			checkRecipient(t, rc)
		}
	}
}
