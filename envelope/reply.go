package envelope

import (
	"strconv"
	"strings"
)

// Reply is the answer that decided a recipient's fate: an SMTP reply, or
// a condition fanmail found itself (Code 0), with its RFC 3463 enhanced
// status when one is known.
type Reply struct {
	Code     int    // SMTP reply code; 0 when no server answered
	Enhanced string // RFC 3463 status such as "5.1.1"; may be empty
	Text     string // the reply text, or a description of the local condition
	Host     string // the MX host that answered, for a DSN's Remote-MTA; not part of String
}

// String is the reply as the queue records it, "CODE ENHANCED TEXT",
// leaving out what it lacks; ParseReply reads it back.
func (r Reply) String() string {
	var b strings.Builder
	if r.Code != 0 {
		b.WriteString(strconv.Itoa(r.Code))
		b.WriteByte(' ')
	}
	if r.Enhanced != "" {
		b.WriteString(r.Enhanced)
		b.WriteByte(' ')
	}
	b.WriteString(r.Text)
	if r.Code == 0 {
		return strings.TrimSpace(b.String())
	}
	return b.String()
}

// ParseReply reads a reply: an optional reply code (2yz to 5yz), then text
// whose first line may start with an enhanced status code. Every line of
// a multi-line reply repeats the enhanced code (RFC 2034 §4); it is kept
// once and the lines are joined with spaces. It reads both what String
// writes and a server's reply, given as its code, a space and the text
// that net/textproto returns (lines joined by "\n").
func ParseReply(s string) Reply {
	var r Reply
	if first, rest, _ := strings.Cut(s, " "); len(first) == 3 && allDigits(first) && first[0] >= '2' && first[0] <= '5' {
		r.Code, _ = strconv.Atoi(first)
		s = rest
	}
	lines := strings.Split(s, "\n")
	var first string
	r.Enhanced, first = splitEnhanced(lines[0])
	if len(lines) == 1 {
		r.Text = first
		return r
	}
	parts := []string{first}
	for _, l := range lines[1:] {
		if e, t := splitEnhanced(l); e == r.Enhanced {
			l = t
		}
		parts = append(parts, strings.TrimSpace(l))
	}
	r.Text = strings.Join(parts, " ")
	return r
}

// splitEnhanced separates a leading RFC 3463 "class.subject.detail "
// from a line: the class 2, 4 or 5, the others one to three digits.
func splitEnhanced(s string) (enh, text string) {
	first, rest, _ := strings.Cut(s, " ")
	if !IsEnhanced(first) {
		return "", s
	}
	return first, rest
}

// IsEnhanced reports whether s is an RFC 3463 status code such as "5.1.1".
func IsEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || !allDigits(p) {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
