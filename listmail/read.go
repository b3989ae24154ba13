package listmail

import (
	"bufio"
	"bytes"
	"io"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"fanmail/address"
)

// maxRead is how much of a message to a command address is read: the
// header and the start of the body are all a command needs, and package
// bounces reads at most this much of a report.
const maxRead = 1 << 20

// maxCommandLines is how many body lines are looked at for a command.
const maxCommandLines = 20

// parsed is what a command is read from.
type parsed struct {
	header    mail.Header
	from      string // the From: address, normalized; "" if none parses
	subject   string
	firstLine string // the first non-empty line of the first text part
}

// readMessage reads the start of a message and parses what a command
// needs. It never fails: a message that does not parse has no command.
func readMessage(r io.Reader) (parsed, []byte) {
	raw, _ := io.ReadAll(io.LimitReader(r, maxRead))
	var p parsed
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil {
		return p, raw
	}
	p.header = mail.Header{Header: e.Header}
	if list, err := p.header.AddressList("From"); err == nil && len(list) > 0 {
		if n, err := address.Normalize(list[0].Address); err == nil {
			p.from = n
		}
	}
	p.subject, _ = p.header.Subject()
	if err == nil || message.IsUnknownCharset(err) || message.IsUnknownEncoding(err) {
		p.firstLine = firstTextLine(e, 0)
	}
	return p, raw
}

// firstTextLine returns the first non-empty line of the first text/plain
// part of e.
func firstTextLine(e *message.Entity, depth int) string {
	if depth > 8 {
		return ""
	}
	if mr := e.MultipartReader(); mr != nil {
		for i := 0; i < 64; i++ {
			part, err := mr.NextPart()
			if err != nil {
				return ""
			}
			if line := firstTextLine(part, depth+1); line != "" {
				return line
			}
		}
		return ""
	}
	if t, _, _ := e.Header.ContentType(); t != "" && t != "text/plain" {
		return ""
	}
	sc := bufio.NewScanner(io.LimitReader(e.Body, 64<<10))
	for n := 0; sc.Scan() && n < maxCommandLines; n++ {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			return line
		}
	}
	return ""
}

// automatic reports why a message must not be answered (RFC 3834 §2:
// an automatic response is never sent to an automatic message, nor to
// mail from a list), or "".
func automatic(sender string, h mail.Header) string {
	if sender == "" {
		return "the null sender"
	}
	if v := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted"))); v != "" && !strings.HasPrefix(v, "no") {
		return "Auto-Submitted: " + v
	}
	switch p := strings.ToLower(strings.TrimSpace(h.Get("Precedence"))); p {
	case "bulk", "list", "junk":
		return "Precedence: " + p
	}
	for _, f := range []string{"List-Id", "List-Unsubscribe", "List-Post"} {
		if h.Has(f) {
			return "a list's mail (" + f + ")"
		}
	}
	if strings.Contains(strings.ToLower(h.Get("X-Auto-Response-Suppress")), "all") {
		return "X-Auto-Response-Suppress: All"
	}
	return ""
}

// command returns the command in a subject or line: its first word, if
// that is one, after any Re: or Fwd: prefixes.
func commandWord(s string) string {
	s = strings.TrimSpace(s)
	for {
		low := strings.ToLower(s)
		cut := false
		for _, p := range []string{"re:", "fwd:", "fw:", "aw:", "wg:"} {
			if strings.HasPrefix(low, p) {
				s, cut = strings.TrimSpace(s[len(p):]), true
				break
			}
		}
		if !cut {
			break
		}
	}
	w, _, _ := strings.Cut(s, " ")
	w = strings.ToLower(strings.Trim(w, " \t\"'.:;!"))
	switch w {
	case "subscribe", "unsubscribe", "help":
		return w
	}
	return ""
}
