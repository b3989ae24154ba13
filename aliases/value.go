package aliases

import (
	"errors"
	"fmt"
	"iter"
	"strings"
	"unicode"
	"unicode/utf8"

	"fanmail/address"
)

// A value is read as sendmail reads it (parseaddr with the Debian
// configuration: RFC 822 comments dropped, the address inside the last
// <> taken, blanks next to an operator dropped). Where sendmail would
// silently turn the value into something else (BlankSub joining words
// with ".", a # taken as part of an address, a program's blanks removed)
// the value is refused with a message saying how to write it instead.

// operators are the characters of sendmail's OperatorChars (Debian's
// cf: .:%@!^/[]+) next to which blanks are dropped rather than
// replaced by BlankSub.
const operators = ".:%@!^/[]+"

// item is one comma-separated value and the line it starts on.
type item struct {
	text string
	line int
}

// splitValues splits a right-hand side at commas outside quotes, angle
// brackets and (comments), appending the items to items. lineAt maps an
// offset in s to its line; an item's line is that of its first non-blank
// character.
func splitValues(items []item, s string, lineAt func(off int) int) ([]item, error) {
	var (
		start        int
		inQuote      bool
		angle, paren int
		quoteAt      int
		parenAt      int
	)
	add := func(end int) {
		t := s[start:end]
		lead := len(t) - len(strings.TrimLeft(t, " \t"))
		items = append(items, item{t, lineAt(start + lead)})
		start = end + 1
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
		case inQuote:
			inQuote = c != '"'
		case paren > 0:
			if c == '(' {
				paren++
			} else if c == ')' {
				paren--
			}
		case c == '"':
			inQuote, quoteAt = true, i
		case c == '(':
			paren, parenAt = 1, i
		case c == '<':
			angle++
		case c == '>' && angle > 0:
			angle--
		case c == ',' && angle == 0:
			add(i)
		}
	}
	switch {
	case inQuote:
		return nil, fmt.Errorf("unterminated quoted string %s (add the closing \")", strings.TrimSpace(s[quoteAt:]))
	case paren > 0:
		return nil, fmt.Errorf("unterminated comment %s (add the closing \")\")", strings.TrimSpace(s[parenAt:]))
	}
	add(len(s))
	return items, nil
}

// errNoAddress is a value that holds no address, only blanks or a
// comment: sendmail skips it, and so does fanmail, with a warning.
var errNoAddress = errors.New("no address")

// parseTarget reads one value: \name, "quoted", |program, /file,
// :include:path, local@domain or a local name, with comments and a
// display name around it. warn is set for input sendmail accepts with a
// complaint (an unbalanced < or >), which is read the same way.
func parseTarget(v string) (t Target, warn string, err error) {
	v = strings.TrimSpace(v)
	if plain(v) {
		// The common case, a bare name or local@domain: nothing to strip.
		if at := strings.LastIndexByte(v, '@'); at >= 0 {
			if _, err := address.Parse(v); err != nil {
				return Target{}, "", fmt.Errorf("bad address %q: %v", v, err)
			}
			return Target{Kind: Address, Value: v}, "", nil
		}
		if simpleAtom(v) {
			return Target{Kind: Local, Value: v}, "", nil
		}
	}
	if !utf8.ValidString(v) {
		return Target{}, "", fmt.Errorf("invalid UTF-8 in %q (save the file as UTF-8)", v)
	}
	if v == "" {
		return Target{}, "", fmt.Errorf("empty value")
	}
	if q := unterminatedQuote(v); q >= 0 {
		return Target{}, "", fmt.Errorf("unterminated quoted string %s (add the closing \")", v[q:])
	}
	if v[0] == '"' && closingQuote(v) == len(v)-1 {
		// A quoted program or file keeps its blanks, commas and quotes.
		if inner := unescape(v[1 : len(v)-1]); strings.HasPrefix(inner, "|") || strings.HasPrefix(inner, "/") {
			return execTarget(inner, true)
		}
	}
	s, err := stripComments(v)
	if err != nil {
		return Target{}, "", err
	}
	if s == "" {
		return Target{}, "", errNoAddress
	}
	s, warn, err = insideAngles(s)
	if err != nil {
		return Target{}, "", err
	}
	if s == "" {
		return Target{}, warn, errNoAddress
	}
	noAlias := false
	if strings.HasPrefix(s, `\`) {
		noAlias, s = true, s[1:]
		if s == "" {
			return Target{}, warn, fmt.Errorf(`lone \ (write \NAME to deliver to NAME without aliasing)`)
		}
	}
	switch {
	case s[0] == '#':
		read, _ := readBlanks(s)
		return Target{}, warn, fmt.Errorf("%q: a # that does not start a line is not a comment (sendmail would read the address %q): put the comment on a line of its own that starts with #", v, read)
	case (s[0] == '|' || s[0] == '/') && !noAlias:
		return execTarget(s, false)
	case len(s) >= 9 && strings.EqualFold(s[:9], ":include:") && !noAlias:
		p := strings.TrimSpace(s[9:])
		if p == "" {
			return Target{}, warn, fmt.Errorf("empty :include: path (write :include:/path/to/file)")
		}
		return Target{Kind: Include, Value: p}, warn, nil
	}
	compact, joined := readBlanks(s)
	if joined {
		return Target{}, warn, fmt.Errorf("%q: blanks inside an address (sendmail would read %q): separate addresses with commas, or quote a name that has blanks", v, compact)
	}
	at := lastAt(compact)
	if at < 0 {
		m, err := address.Parse(compact + "@alias.invalid")
		if err != nil {
			return Target{}, warn, fmt.Errorf("bad local name %q: %v%s", v, err, hint(compact))
		}
		return Target{Kind: Local, Value: m.Local, NoAlias: noAlias}, warn, nil
	}
	local, domain := compact[:at], strings.TrimSuffix(compact[at+1:], ".")
	if _, err := address.Parse(local + "@" + domain); err != nil {
		return Target{}, warn, fmt.Errorf("bad address %q: %v", v, err)
	}
	return Target{Kind: Address, Value: local + "@" + domain, NoAlias: noAlias}, warn, nil
}

// plain reports whether v is free of everything that needs more than
// address.Parse: quotes, comments, brackets, blanks, backslashes,
// programs, files, :include: and a trailing dot.
func plain(v string) bool {
	if v == "" || v[0] == '|' || v[0] == '/' || v[0] == '#' || v[len(v)-1] == '.' {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"', '(', ')', '<', '>', '\\', ' ', '\t', ':', ',':
			return false
		}
		if v[i] >= 0x80 {
			return false
		}
	}
	return true
}

// execTarget reads a |program or /file; quoted says it was written in
// quotes, the only way a program or file may contain blanks.
func execTarget(s string, quoted bool) (Target, string, error) {
	if !quoted && strings.ContainsAny(s, " \t") {
		return Target{}, "", fmt.Errorf("%s has blanks outside quotes (sendmail would drop them or join the words with \".\"): quote it: %s", s, quote(s))
	}
	if s[0] == '|' {
		cmd := strings.TrimSpace(s[1:])
		if cmd == "" {
			return Target{}, "", fmt.Errorf(`empty program after | (write |/path/to/program, in quotes if it has arguments)`)
		}
		return Target{Kind: Program, Value: cmd}, "", nil
	}
	if strings.HasSuffix(s, "/") {
		return Target{}, "", fmt.Errorf("file target %s is a directory (name a file to append to)", s)
	}
	return Target{Kind: File, Value: s}, "", nil
}

// stripComments removes (comments) outside quoted strings.
func stripComments(s string) (string, error) {
	if !strings.Contains(s, "(") {
		return s, nil
	}
	var b strings.Builder
	inQuote, depth := false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case depth > 0:
			switch c {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			continue
		case c == '\\' && i+1 < len(s):
			b.WriteByte(c)
			i++
			c = s[i]
		case inQuote:
			inQuote = c != '"'
		case c == '"':
			inQuote = true
		case c == '(':
			depth++
			b.WriteByte(' ') // a comment separates words, as a blank does
			continue
		}
		b.WriteByte(c)
	}
	if depth > 0 {
		return "", fmt.Errorf("unterminated comment in %q (add the closing \")\")", s)
	}
	return strings.TrimSpace(b.String()), nil
}

// insideAngles returns the address inside the last <> of s ("Full Name"
// <addr> or Name <addr>), or s when it has none. An unbalanced < or >
// is read as sendmail reads it, with a warning.
func insideAngles(s string) (string, string, error) {
	var opens, closes []int
	for i, bare := range prescan(s) {
		switch {
		case !bare:
		case s[i] == '<':
			opens = append(opens, i)
		case s[i] == '>':
			closes = append(closes, i)
		}
	}
	if len(opens) == 0 {
		if len(closes) == 0 {
			return s, "", nil
		}
		var b strings.Builder
		last := 0
		for _, i := range closes {
			b.WriteString(s[last:i])
			last = i + 1
		}
		b.WriteString(s[last:])
		inner := strings.TrimSpace(b.String())
		return inner, fmt.Sprintf("%q: unbalanced '>' (read as %s, as sendmail does; remove it)", s, inner), nil
	}
	open, close := opens[len(opens)-1], -1
	for _, i := range closes {
		if i > open {
			close = i
			break
		}
	}
	if close < 0 {
		inner := strings.TrimSpace(s[open+1:])
		return inner, fmt.Sprintf("%q: unbalanced '<' (read as %s, as sendmail does; add the closing >)", s, inner), nil
	}
	inner := strings.TrimSpace(s[open+1 : close])
	if inner == "" {
		return "", "", fmt.Errorf("empty <> in %q (give the address inside <>)", s)
	}
	return inner, "", nil
}

// readBlanks returns s as sendmail reads its blanks: dropped next to an
// operator such as @ or ., and between two words replaced by "."
// (Debian's BlankSub), which joined reports.
func readBlanks(s string) (read string, joined bool) {
	if !strings.ContainsAny(s, " \t") {
		return s, false
	}
	var b strings.Builder
	skipped := false // bare blanks since the last byte written
	for i, bare := range prescan(s) {
		c := s[i]
		if bare && (c == ' ' || c == '\t') {
			skipped = true
			continue
		}
		if skipped {
			prev := b.String()
			if prev != "" && !strings.ContainsRune(operators, rune(prev[len(prev)-1])) && !strings.ContainsRune(operators, rune(c)) {
				b.WriteByte('.')
				joined = true
			}
			skipped = false
		}
		b.WriteByte(c)
	}
	return b.String(), joined
}

// prescan yields the index of every byte of s and whether sendmail reads
// it bare: outside "quotes", not a quote mark, and neither a backslash
// nor the byte one escapes. Only bare bytes are operators or blanks.
func prescan(s string) iter.Seq2[int, bool] {
	return func(yield func(int, bool) bool) {
		inQuote := false
		for i := 0; i < len(s); i++ {
			c, bare := s[i], false
			switch {
			case c == '\\' && i+1 < len(s):
				if !yield(i, false) {
					return
				}
				i++
			case inQuote:
				inQuote = c != '"'
			case c == '"':
				inQuote = true
			default:
				bare = true
			}
			if !yield(i, bare) {
				return
			}
		}
	}
}

// unterminatedQuote is the index of a quote that is never closed, or -1.
func unterminatedQuote(s string) int {
	at := -1
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case at >= 0:
			if c == '"' {
				at = -1
			}
		case c == '"':
			at = i
		}
	}
	return at
}

// lastAt is the index of the last @ outside quotes, or -1.
func lastAt(s string) int {
	at := -1
	for i, bare := range prescan(s) {
		if bare && s[i] == '@' {
			at = i
		}
	}
	return at
}

// simpleAtom reports whether s is a short dot-atom of letters, digits
// and . - _ + *, the usual alias name, which needs no full parse.
func simpleAtom(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '+', c == '*':
		case c == '.' && s[i-1] != '.':
		default:
			return false
		}
	}
	return true
}

// closingQuote returns the index of the quote ending the quoted string
// at s[0], or -1.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// hint explains values from other programs' alias formats.
func hint(v string) string {
	if i := strings.IndexByte(v, ':'); i > 0 && !strings.ContainsFunc(v[:i], unicode.IsSpace) {
		return " (fanmail knows names, addresses, :include:/path, |program and /file; " + v[:i+1] + " is not an aliases(5) target)"
	}
	return ""
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
