package aliases

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"fanmail/address"
)

// maxLine bounds one physical line, so a corrupt file cannot exhaust memory.
const maxLine = 1 << 20

// Parse reads an aliases(5) file. It returns every entry that parsed and
// every problem found; a bad entry or value is reported and skipped, the
// rest of the file is still read. name labels positions (FILE:LINE).
func Parse(r io.Reader, name string) ([]Entry, Problems) {
	return parse(r, name, 0)
}

// parse is Parse with room for sizeHint entries made up front.
func parse(r io.Reader, name string, sizeHint int) ([]Entry, Problems) {
	var (
		entries = make([]Entry, 0, sizeHint)
		probs   Problems
		cur     []string // the lines of the entry being gathered
		start   int      // line of the entry being gathered; 0 = none
		joinBS  bool     // previous line ended with a backslash
	)
	flush := func() {
		if start > 0 {
			text := cur[0]
			if len(cur) > 1 {
				text = strings.Join(cur, "")
			}
			if e, ok := parseEntry(text, Pos{name, start}, &probs); ok {
				entries = append(entries, e)
			}
		}
		cur = cur[:0]
		start = 0
	}
	err := eachLine(r, func(n int, line string) {
		cont := joinBS
		joinBS = false
		if strings.HasSuffix(line, `\`) && !strings.HasSuffix(line, `\\`) {
			line, joinBS = line[:len(line)-1], true
		}
		switch {
		case cont && start > 0:
			cur = append(cur, line)
		case strings.TrimSpace(line) == "":
			// Blank lines neither end an entry nor count as one.
		case line[0] == '#':
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if start == 0 {
				probs = append(probs, Problem{Pos{name, n}, Error,
					"non-continuation line starts with space (a comment or the start of the file ends an entry: remove the leading blanks or move the line up)"})
				joinBS = false
				return
			}
			cur = append(cur, " ", line)
		default:
			flush()
			start = n
			cur = append(cur, line)
		}
	})
	flush()
	if err != nil {
		probs = append(probs, Problem{Pos{name, 0}, Error, fmt.Sprintf("read: %v", err)})
	}
	return entries, probs
}

// ParseInclude reads an :include: file: comma-separated targets on any
// number of lines, # comment lines and blank lines skipped.
func ParseInclude(r io.Reader, name string) ([]Target, Problems) {
	var (
		targets []Target
		probs   Problems
	)
	err := eachLine(r, func(n int, line string) {
		s := strings.TrimSpace(line)
		if s == "" || s[0] == '#' {
			return
		}
		targets = parseValues(s, Pos{name, n}, targets, &probs)
	})
	if err != nil {
		probs = append(probs, Problem{Pos{name, 0}, Error, fmt.Sprintf("read: %v", err)})
	}
	return targets, probs
}

// eachLine calls fn for each line of r, numbered from 1, without its
// line ending (LF or CRLF).
func eachLine(r io.Reader, fn func(n int, line string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	n := 0
	for sc.Scan() {
		n++
		fn(n, strings.TrimSuffix(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("after line %d: %w", n, err)
	}
	return nil
}

// parseEntry parses one logical line "name: value, value".
func parseEntry(s string, pos Pos, probs *Problems) (Entry, bool) {
	bad := func(format string, args ...any) (Entry, bool) {
		*probs = append(*probs, Problem{pos, Error, fmt.Sprintf(format, args...)})
		return Entry{}, false
	}
	if !utf8.ValidString(s) {
		return bad("invalid UTF-8 (save the file as UTF-8)")
	}
	var raw, rest string
	if s[0] == '"' {
		end := closingQuote(s)
		if end < 0 {
			return bad("unterminated quoted name (add the closing \")")
		}
		raw, rest = s[:end+1], strings.TrimLeft(s[end+1:], " \t")
		if !strings.HasPrefix(rest, ":") {
			return bad("missing colon after alias name %s (write NAME: VALUE, ...)", raw)
		}
		rest = rest[1:]
	} else {
		var ok bool
		raw, rest, ok = strings.Cut(s, ":")
		if !ok {
			return bad("missing colon (write NAME: VALUE, ...)")
		}
		raw = strings.TrimRight(raw, " \t")
	}
	name, err := parseName(raw)
	if err != nil {
		return bad("illegal alias name %q: %v", raw, err)
	}
	e := Entry{Name: strings.ToLower(name), Pos: pos}
	if strings.TrimSpace(rest) == "" {
		return bad("missing value for alias %s (write at least one target after the colon)", quoteName(name))
	}
	before := len(*probs)
	e.Targets = parseValues(rest, pos, nil, probs)
	if len(e.Targets) == 0 && len(*probs) > before {
		return Entry{}, false // the values' own errors say why
	}
	if len(e.Targets) == 0 {
		return bad("no usable value for alias %s", quoteName(name))
	}
	return e, true
}

// parseName validates an alias name, a local part, and returns it unquoted.
func parseName(raw string) (string, error) {
	switch {
	case raw == "":
		return "", fmt.Errorf("empty name (write NAME: VALUE, ...)")
	case raw[0] != '"' && strings.ContainsAny(raw, " \t"):
		return "", fmt.Errorf(`contains blanks (quote it: "john doe": ...)`)
	case raw[0] != '"' && strings.Contains(raw, "@"):
		return "", fmt.Errorf("has a domain: an alias name is a local part (write just the part before @)")
	case raw[0] == '\\':
		return "", fmt.Errorf(`starts with \ (a backslash is only meaningful on the right of the colon)`)
	}
	if simpleAtom(raw) {
		return raw, nil
	}
	m, err := address.Parse(raw + "@alias.invalid")
	if err != nil {
		return "", err
	}
	return m.Local, nil
}

// simpleAtom reports whether s is a short dot-atom of letters, digits
// and . - _ +, the usual alias name, which needs no full parse.
func simpleAtom(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '+':
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

// parseValues splits a right-hand side at commas outside quotes, angle
// brackets and (comments), and appends the targets to dst.
func parseValues(s string, pos Pos, dst []Target, probs *Problems) []Target {
	bad := func(format string, args ...any) {
		*probs = append(*probs, Problem{pos, Error, fmt.Sprintf(format, args...)})
	}
	add := func(v string) {
		v = strings.TrimSpace(v)
		if v == "" {
			return
		}
		t, err := parseTarget(v)
		if err != nil {
			bad("%v", err)
			return
		}
		t.Pos = pos
		dst = append(dst, t)
	}
	if !strings.ContainsAny(s, `"(<\`) {
		// The common case, plain comma-separated values: no copying.
		for v := range strings.SplitSeq(s, ",") {
			add(v)
		}
		return dst
	}
	var (
		item    strings.Builder
		inQuote bool
		angle   int
		paren   int
	)
	end := func() {
		add(item.String())
		item.Reset()
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && paren == 0:
			item.WriteByte(c)
			i++
			item.WriteByte(s[i])
			continue
		case inQuote:
			inQuote = c != '"'
		case paren > 0:
			if c == '(' {
				paren++
			} else if c == ')' {
				paren--
			}
			continue // comments are dropped
		case c == '"':
			inQuote = true
		case c == '(':
			paren++
			continue
		case c == '<':
			angle++
		case c == '>' && angle > 0:
			angle--
		case c == ',' && angle == 0:
			end()
			continue
		}
		item.WriteByte(c)
	}
	switch {
	case inQuote:
		bad("unterminated quoted string in %q (add the closing \")", strings.TrimSpace(item.String()))
	case paren > 0:
		bad("unterminated comment in %q (add the closing \")\")", strings.TrimSpace(item.String()))
	default:
		end()
	}
	return dst
}

// parseTarget classifies one value: \name, "quoted", |program, /file,
// :include:path, local@domain or a local name.
func parseTarget(v string) (Target, error) {
	// "Full Name <addr>": only the address counts.
	if i, j := strings.LastIndexByte(v, '<'), strings.LastIndexByte(v, '>'); i >= 0 && j > i && v[0] != '"' && v[0] != '|' {
		v = strings.TrimSpace(v[i+1 : j])
	}
	if v == "" {
		return Target{}, fmt.Errorf("empty <> (give the address inside <>)")
	}
	noAlias := false
	if v[0] == '\\' {
		noAlias, v = true, v[1:]
		if v == "" {
			return Target{}, fmt.Errorf(`lone \ (write \NAME to deliver to NAME without aliasing)`)
		}
	}
	switch {
	case v[0] == '"':
		end := closingQuote(v)
		if end < 0 {
			return Target{}, fmt.Errorf("unterminated quoted string %s (add the closing \")", v)
		}
		inner := unescape(v[1:end])
		if end == len(v)-1 && !noAlias {
			if strings.HasPrefix(inner, "|") || strings.HasPrefix(inner, "/") {
				return parseTarget(inner)
			}
		}
	case noAlias:
	case v[0] == '|':
		cmd := strings.TrimSpace(v[1:])
		if cmd == "" {
			return Target{}, fmt.Errorf(`empty program after | (write |/path/to/program args, quoted if it contains a comma)`)
		}
		return Target{Kind: Program, Value: cmd}, nil
	case v[0] == '/':
		if strings.HasSuffix(v, "/") {
			return Target{}, fmt.Errorf("file target %s is a directory (name a file to append to)", v)
		}
		return Target{Kind: File, Value: v}, nil
	case len(v) >= 9 && strings.EqualFold(v[:9], ":include:"):
		p := strings.TrimSpace(v[9:])
		if p == "" {
			return Target{}, fmt.Errorf("empty :include: path (write :include:/path/to/file)")
		}
		return Target{Kind: Include, Value: p}, nil
	}
	quotedOnly := v[0] == '"' && closingQuote(v) == len(v)-1
	if quotedOnly || v[0] != '"' && !strings.Contains(v, "@") {
		if simpleAtom(v) {
			return Target{Kind: Local, Value: v, NoAlias: noAlias}, nil
		}
		m, err := address.Parse(v + "@alias.invalid")
		if err != nil {
			return Target{}, fmt.Errorf("bad local name %q: %v%s", v, err, hint(v))
		}
		return Target{Kind: Local, Value: m.Local, NoAlias: noAlias}, nil
	}
	m, err := address.Parse(v)
	if err != nil {
		return Target{}, fmt.Errorf("bad address %q: %v", v, err)
	}
	a := m.String()
	if a[0] == '|' || a[0] == '/' {
		a = `"` + m.Local + `"@` + m.Domain // else it would read as a program or file
	}
	return Target{Kind: Address, Value: a, NoAlias: noAlias}, nil
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
