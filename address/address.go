// Package address parses and normalizes RFC 5321 mailboxes
// (Local-part "@" Domain). It is a leaf package shared by every stage of
// the pipeline: ingress checks envelope addresses with it, lists stores
// members in its normal form, and the expander splits on its domains.
//
// Internationalized addresses (RFC 6531) are accepted as UTF-8: a local
// part may contain any printable non-ASCII character, and a domain label
// may contain non-ASCII letters, marks and digits. Domains are kept as
// written in UTF-8 (lowercased), not converted to A-labels (xn--), and no
// IDNA2008 mapping or Unicode normalization is applied; an A-label and
// its U-label are therefore different domains to this package. Delivery
// to such addresses needs SMTPUTF8, which is the delivery agent's concern.
//
// Deliberate restrictions beyond the RFC grammar: an empty local part
// (`""@example.org`) is rejected, a trailing dot on the domain is
// rejected rather than silently removed, and IPv4 literals with leading
// zeros (`[01.2.3.4]`) are rejected because they are ambiguous.
package address

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Length limits from RFC 5321 §4.5.3.1.
const (
	maxLocal   = 64  // §4.5.3.1.1
	maxDomain  = 255 // §4.5.3.1.2
	maxLabel   = 63  // RFC 1035 §2.3.4
	maxMailbox = 254 // §4.5.3.1.3: a path is at most 256 octets including "<" and ">"
)

// Mailbox is a parsed address. Local is the local part without quoting
// (the content of a quoted string, escapes removed); Domain is lowercased,
// and is an address literal in brackets such as "[192.0.2.1]" or
// "[IPv6:2001:db8::1]".
type Mailbox struct {
	Local  string
	Domain string
}

// String returns the address as local@domain, quoting the local part
// when it is not a valid dot-atom.
func (m Mailbox) String() string {
	return quoteLocal(m.Local) + "@" + m.Domain
}

// Error is a syntax error. Reason is short and safe to show to an SMTP
// client: it never contains raw control characters.
type Error struct {
	Reason string
}

func (e *Error) Error() string { return e.Reason }

func errorf(format string, args ...any) error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

// Normalize parses s and returns its canonical form: surrounding
// whitespace and angle brackets removed, domain lowercased, local part
// quoted only if it must be.
func Normalize(s string) (string, error) {
	m, err := Parse(s)
	if err != nil {
		return "", err
	}
	return m.String(), nil
}

// Parse validates s as an RFC 5321 mailbox. Surrounding whitespace and one
// pair of surrounding angle brackets are removed first. Errors are of type
// *Error.
func Parse(s string) (Mailbox, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") {
		if !strings.HasSuffix(s, ">") || len(s) < 2 {
			return Mailbox{}, errorf("missing closing >")
		}
		s = s[1 : len(s)-1]
	} else if strings.HasSuffix(s, ">") {
		if strings.Contains(s, "<") {
			return Mailbox{}, errorf("text before < (give only the address inside <>)")
		}
		return Mailbox{}, errorf("missing opening <")
	}
	if s == "" {
		return Mailbox{}, errorf("empty address")
	}
	if !utf8.ValidString(s) {
		return Mailbox{}, errorf("invalid UTF-8")
	}
	local, rest, err := parseLocal(s)
	if err != nil {
		return Mailbox{}, err
	}
	domain, err := parseDomain(rest)
	if err != nil {
		return Mailbox{}, err
	}
	m := Mailbox{Local: local, Domain: domain}
	// Limits apply to the canonical form, so that whatever Parse accepts,
	// String produces and Parse accepts again.
	if n := len(quoteLocal(local)); n > maxLocal {
		return Mailbox{}, errorf("local part longer than %d %s", maxLocal, unit(local))
	}
	if n := len(m.String()); n > maxMailbox {
		return Mailbox{}, errorf("address longer than %d %s", maxMailbox, unit(s))
	}
	return m, nil
}

// parseLocal splits s at the "@" that ends the local part and returns the
// unquoted local part and what follows the "@".
func parseLocal(s string) (local, rest string, err error) {
	if s[0] == '"' {
		return parseQuoted(s)
	}
	at := strings.IndexByte(s, '@')
	switch {
	case at < 0:
		return "", "", errorf("missing @")
	case at == 0:
		return "", "", errorf("missing local part")
	case strings.IndexByte(s[at+1:], '@') >= 0:
		return "", "", errorf("more than one @ (quote the local part if it really contains @)")
	}
	local, rest = s[:at], s[at+1:]
	if err := checkDotAtom(local); err != nil {
		return "", "", err
	}
	return local, rest, nil
}

// checkDotAtom validates an unquoted local part: dot-separated atoms of
// atext (RFC 5322 §3.2.3), extended with UTF-8 by RFC 6531 §3.3.
func checkDotAtom(local string) error {
	switch {
	case local[0] == '.':
		return errorf("local part starts with a dot")
	case local[len(local)-1] == '.':
		return errorf("local part ends with a dot")
	case strings.Contains(local, ".."):
		return errorf("consecutive dots in local part")
	}
	for _, r := range local {
		if r == '.' || isAtext(r) {
			continue
		}
		return errorf("%s in local part", describe(r))
	}
	return nil
}

// parseQuoted parses a quoted-string local part (RFC 5321 §4.1.2,
// qtextSMTP and quoted-pairSMTP, extended with UTF-8 by RFC 6531).
func parseQuoted(s string) (local, rest string, err error) {
	var b strings.Builder
	for i := 1; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"':
			rest = s[i+1:]
			if rest == "" || rest[0] != '@' {
				if strings.IndexByte(rest, '@') < 0 {
					return "", "", errorf("missing @")
				}
				return "", "", errorf("text after the closing quote of the local part")
			}
			if b.Len() == 0 {
				return "", "", errorf("missing local part")
			}
			return b.String(), rest[1:], nil
		case r == '\\':
			if i+1 >= len(s) {
				return "", "", errorf("unterminated quoted local part")
			}
			c := s[i+1]
			if c < ' ' || c > '~' {
				return "", "", errorf("backslash before %s in quoted local part", describeByte(s[i+1:]))
			}
			b.WriteByte(c)
			i += 2
			continue
		case r < ' ' || r == 0x7f || (r >= utf8.RuneSelf && !isPrintableUTF8(r)):
			return "", "", errorf("%s in quoted local part", describe(r))
		}
		b.WriteRune(r)
		i += size
	}
	return "", "", errorf("unterminated quoted local part")
}

// parseDomain validates and lowercases a domain or address literal.
func parseDomain(d string) (string, error) {
	if d == "" {
		return "", errorf("missing domain")
	}
	if strings.IndexByte(d, '@') >= 0 {
		return "", errorf("more than one @ (quote the local part if it really contains @)")
	}
	if d[0] == '[' {
		return parseLiteral(d)
	}
	d = strings.ToLower(d)
	if len(d) > maxDomain {
		return "", errorf("domain longer than %d %s", maxDomain, unit(d))
	}
	switch {
	case d[0] == '.':
		return "", errorf("domain starts with a dot")
	case d[len(d)-1] == '.':
		return "", errorf("domain ends with a dot")
	case strings.Contains(d, ".."):
		return "", errorf("consecutive dots in domain")
	}
	for label := range strings.SplitSeq(d, ".") {
		if err := checkLabel(label); err != nil {
			return "", err
		}
	}
	return d, nil
}

// checkLabel validates one LDH label (RFC 5321 sub-domain; RFC 6531
// allows U-labels, which here means letters, marks and digits).
func checkLabel(label string) error {
	if len(label) > maxLabel {
		return errorf("domain label longer than %d %s", maxLabel, unit(label))
	}
	if label[0] == '-' {
		return errorf("domain label starts with a hyphen")
	}
	if label[len(label)-1] == '-' {
		return errorf("domain label ends with a hyphen")
	}
	for _, r := range label {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r)):
		default:
			return errorf("%s in domain", describe(r))
		}
	}
	return nil
}

// parseLiteral validates an address literal (RFC 5321 §4.1.3) and returns
// it in canonical form, so that one address has one spelling.
func parseLiteral(d string) (string, error) {
	if d[len(d)-1] != ']' {
		return "", errorf("address literal missing closing ]")
	}
	inner := d[1 : len(d)-1]
	if ip, err := netip.ParseAddr(inner); err == nil && ip.Is6() {
		return "", errorf("IPv6 address literal without the IPv6: prefix")
	}
	if tag, addr, ok := strings.Cut(inner, ":"); ok {
		if !strings.EqualFold(tag, "IPv6") {
			return "", errorf("unsupported address literal tag %q", tag)
		}
		ip, err := netip.ParseAddr(addr)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", errorf("invalid IPv6 address literal")
		}
		return "[IPv6:" + ip.String() + "]", nil
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || !ip.Is4() {
		return "", errorf("invalid IPv4 address literal")
	}
	return "[" + ip.String() + "]", nil
}

// quoteLocal returns local as a dot-atom if it is one, else as a quoted
// string with '"' and '\' escaped.
func quoteLocal(local string) string {
	if local != "" && checkDotAtom(local) == nil {
		return local
	}
	var b strings.Builder
	b.Grow(len(local) + 2)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isAtext reports whether r may appear in an atom (RFC 5322 atext, plus
// printable UTF-8 per RFC 6531).
func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r >= utf8.RuneSelf:
		return isPrintableUTF8(r)
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

// isPrintableUTF8 excludes what would be invisible or would break a line
// in a header or log: controls, format characters, spaces and separators.
func isPrintableUTF8(r rune) bool {
	return r != utf8.RuneError && unicode.IsGraphic(r) && !unicode.IsSpace(r)
}

// describe names a rejected character without echoing control characters.
func describe(r rune) string {
	switch {
	case r == ' ':
		return "space"
	case r == '@':
		return "@"
	case r < ' ' || r == 0x7f:
		return fmt.Sprintf("control character %U", r)
	case r >= utf8.RuneSelf:
		return fmt.Sprintf("invalid character %U", r)
	}
	return fmt.Sprintf("invalid character %q", r)
}

func describeByte(s string) string {
	r, _ := utf8.DecodeRuneInString(s)
	return describe(r)
}

// unit makes a length limit read naturally: for ASCII a character is an
// octet; for UTF-8 the limit is in bytes, not characters.
func unit(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return "bytes"
		}
	}
	return "characters"
}
