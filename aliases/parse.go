package aliases

import (
	"errors"
	"fmt"
	"strings"
)

// The file is read with sendmail 8.17's readaliases rules:
//
//   - A physical line ending in a backslash is joined to the next one,
//     the backslash and newline removed; a line followed by one that
//     starts with a blank or tab is joined to it. Both rules apply to
//     every line, comments and blank lines included.
//   - A logical line that is empty or starts with # is a comment. So an
//     indented line after a comment is part of the comment (a warning
//     says so), and an indented # line inside an entry is part of the
//     entry's value, not a comment.
//   - A logical line that starts with a blank is an error: after a blank
//     line or at the start of the file, an indented line continues
//     nothing.
//   - NAME is what precedes the first colon; an empty value is an error.
//
// fanmail also reads CRLF files as LF files (sendmail keeps the CR), and
// takes entries longer than sendmail's 8 KiB line buffer, which sendmail
// refuses as "alias line too long".

// physical is one line of a file as read, without its line ending.
type physical struct {
	text string
	n    int // line number, from 1
}

// logical is one logical line: physical lines joined by continuation.
type logical struct {
	text  string
	first int   // line number of the first physical line
	segs  []int // offsets in text where each joined physical line starts
	lines []int // the line numbers of those physical lines
}

// lineAt is the line number of the character at offset off.
func (l *logical) lineAt(off int) int {
	n := l.first
	for i, s := range l.segs {
		if s > off {
			break
		}
		n = l.lines[i]
	}
	return n
}

// splitLines returns the physical lines of text, CR LF read as LF. The
// lines share text's memory.
func splitLines(text string) []physical {
	lines := make([]physical, 0, strings.Count(text, "\n")+1)
	for n := 1; text != ""; n++ {
		line := text
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		lines = append(lines, physical{strings.TrimSuffix(line, "\r"), n})
	}
	return lines
}

// continues reports whether the logical line ending with last goes on
// with next: after a trailing backslash, or when next starts with a blank.
func continues(last, next string) bool {
	return strings.HasSuffix(last, `\`) || next != "" && (next[0] == ' ' || next[0] == '\t')
}

// join makes the logical line that starts at lines[i] into l (reusing
// its slices) and returns the index of the line after it.
func join(lines []physical, i int, l *logical, b *strings.Builder) int {
	l.text, l.first = lines[i].text, lines[i].n
	l.segs, l.lines = append(l.segs[:0], 0), append(l.lines[:0], lines[i].n)
	if i+1 == len(lines) || !continues(l.text, lines[i+1].text) {
		return i + 1 // the common case: nothing to copy
	}
	b.Reset()
	last := lines[i].text
	for ; i+1 < len(lines) && continues(last, lines[i+1].text); i++ {
		b.WriteString(strings.TrimSuffix(last, `\`))
		last = lines[i+1].text
		l.segs = append(l.segs, b.Len())
		l.lines = append(l.lines, lines[i+1].n)
	}
	b.WriteString(last)
	l.text = b.String()
	return i + 1
}

// parsed is what reading one aliases file produced.
type parsed struct {
	entries []Entry
	refused []Entry // names whose definition was refused (no targets)
	probs   Problems
}

// parseFile reads an aliases file's content. localDomains is class w: a
// name written NAME@DOMAIN is NAME when DOMAIN is local.
func parseFile(data []byte, name string, localDomains []string) parsed {
	var (
		p     parsed
		l     logical
		b     strings.Builder
		lines = splitLines(string(data))
	)
	p.entries = make([]Entry, 0, len(lines))
	for i := 0; i < len(lines); {
		i = join(lines, i, &l, &b)
		p.logicalLine(&l, name, localDomains)
	}
	return p
}

func (p *parsed) add(pos Pos, sev Severity, format string, args ...any) {
	p.probs = append(p.probs, Problem{pos, sev, fmt.Sprintf(format, args...)})
}

func (p *parsed) logicalLine(l *logical, file string, localDomains []string) {
	pos := Pos{file, l.first}
	text := l.text
	switch {
	case text == "" || text[0] == '#':
		// A comment swallows the indented lines after it, as in sendmail.
		if text != "" {
			for i, seg := range l.segs[1:] {
				if strings.TrimSpace(text[seg:segEnd(l, i+1)]) != "" {
					p.add(Pos{file, l.lines[i+1]}, Warning,
						"line continues the comment above it (an indented line, or one after a backslash, joins the line before, as in sendmail), so it is ignored: remove the leading blanks, or the comment")
					break
				}
			}
		}
		return
	case text[0] == ' ' || text[0] == '\t':
		// After a blank line, or at the start of the file.
		at := l.first
		for i, seg := range l.segs {
			if strings.TrimSpace(text[seg:segEnd(l, i)]) != "" {
				at = l.lines[i]
				break
			}
			if at == l.first && seg < segEnd(l, i) {
				at = l.lines[i] // a line of blanks, for want of better
			}
		}
		if strings.TrimSpace(text) == "" {
			p.add(Pos{file, at}, Warning, "line of blanks after a blank line (sendmail reports it as a non-continuation line): empty it")
			return
		}
		p.add(Pos{file, at}, Error,
			"line starts with a blank but continues no entry (a blank line or the start of the file ends an entry): remove the leading blanks, or the blank line above it")
		return
	}
	colon := strings.IndexByte(text, ':')
	if colon < 0 {
		p.add(pos, Error, "missing colon (write NAME: VALUE, ...)")
		return
	}
	raw := text[:colon]
	name, err := parseName(raw, localDomains)
	if err != nil {
		p.add(pos, Error, "illegal alias name %q: %v", strings.TrimSpace(raw), err)
		if be := (*blankNameError)(nil); errors.As(err, &be) {
			// sendmail would define the dotted name: expanding it is an
			// error rather than a local mailbox.
			p.refused = append(p.refused, Entry{Name: lower(be.reads), Pos: pos})
		}
		return
	}
	e := Entry{Name: lower(name), Pos: pos}
	rest := text[colon+1:]
	if strings.TrimSpace(rest) == "" {
		p.add(pos, Error, "missing value for alias %s (write at least one target after the colon)", quoteName(name))
		p.refused = append(p.refused, e)
		return
	}
	items, err := splitValues(nil, rest, func(off int) int { return l.lineAt(colon + 1 + off) })
	if err != nil {
		p.add(pos, Error, "alias %s: %v", quoteName(name), err)
		p.refused = append(p.refused, e)
		return
	}
	bad := 0
	for _, it := range items {
		if strings.TrimSpace(it.text) == "" {
			continue // sendmail skips empty values between commas
		}
		ipos := Pos{file, it.line}
		t, err := p.target(ipos, it.text)
		switch {
		case errors.Is(err, errNoAddress):
			p.add(ipos, Warning, "%q holds no address, only a comment: it is skipped", strings.TrimSpace(it.text))
		case err != nil:
			bad++
		default:
			e.Targets = append(e.Targets, t)
		}
	}
	switch {
	case len(e.Targets) == 0 && bad > 0:
		p.refused = append(p.refused, e) // the values' own errors say why
	case len(e.Targets) == 0:
		p.add(pos, Warning, "alias %s has no target: mail to it goes nowhere", quoteName(name))
		p.entries = append(p.entries, e)
	default:
		p.entries = append(p.entries, e)
	}
}

// target parses the value text found at pos, reporting its warning and
// any error but errNoAddress (a value that is only a comment), which is
// the caller's to judge.
func (p *parsed) target(pos Pos, text string) (Target, error) {
	t, warn, err := parseTarget(text)
	if warn != "" {
		p.add(pos, Warning, "%s", warn)
	}
	if err != nil && !errors.Is(err, errNoAddress) {
		p.add(pos, Error, "%v", err)
	}
	t.Pos = pos
	return t, err
}

// segEnd is the end offset of segment i of l.
func segEnd(l *logical, i int) int {
	if i+1 < len(l.segs) {
		return l.segs[i+1]
	}
	return len(l.text)
}

// blankNameError is a name with blanks, which sendmail reads with
// BlankSub: "john doe" as john.doe.
type blankNameError struct{ reads string }

func (e *blankNameError) Error() string {
	return fmt.Sprintf(`contains blanks (sendmail would read %q): quote it ("john doe": ...) or join the words with a dot`, e.reads)
}

// parseName reads an alias name as sendmail parses the left-hand side:
// an address that must be local (a bare name, or NAME@DOMAIN with DOMAIN
// in class w), with comments and <> allowed around it.
func parseName(raw string, localDomains []string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", fmt.Errorf("empty name (write NAME: VALUE, ...)")
	}
	if simpleAtom(raw) {
		return raw, nil
	}
	t, _, err := parseTarget(raw)
	switch {
	case errors.Is(err, errNoAddress):
		return "", fmt.Errorf("empty name (write NAME: VALUE, ...)")
	case err != nil:
		if strings.Contains(err.Error(), "blanks inside an address") {
			read, _ := readBlanks(raw)
			return "", &blankNameError{read}
		}
		return "", err
	case t.NoAlias || t.Kind != Local && t.Kind != Address:
		return "", fmt.Errorf("a name is a local part: no \\, |, / or :include: on the left of the colon")
	case t.Kind == Address:
		at := strings.LastIndexByte(t.Value, '@')
		if !inClass(t.Value[at+1:], localDomains) {
			return "", fmt.Errorf("cannot alias non-local names: %s is not a local domain (write just the part before @)", t.Value[at+1:])
		}
		local := t.Value[:at]
		if strings.HasPrefix(local, `"`) {
			local = unescape(local[1 : len(local)-1])
		}
		return local, nil
	}
	return t.Value, nil
}

// parseInclude reads an :include: file as sendmail's include() does: a
// line that starts with # and an empty line are skipped, and every other
// line is a comma-separated list of values (no continuation lines).
func parseInclude(data []byte, name string) ([]Target, Problems) {
	var (
		p     parsed
		items []item
		lines = splitLines(string(data))
	)
	targets := make([]Target, 0, len(lines))
	for _, l := range lines {
		if l.text == "" || l.text[0] == '#' {
			continue
		}
		n := l.n
		var err error
		items, err = splitValues(items[:0], l.text, func(int) int { return n })
		if err != nil {
			p.add(Pos{name, l.n}, Error, "%v", err)
			continue
		}
		for _, it := range items {
			if strings.TrimSpace(it.text) == "" {
				continue
			}
			// A value that is only a comment is skipped without a word.
			if t, err := p.target(Pos{name, l.n}, it.text); err == nil {
				targets = append(targets, t)
			}
		}
	}
	return targets, p.probs
}

// inClass reports whether domain is one of the local domains.
func inClass(domain string, localDomains []string) bool {
	domain = strings.TrimSuffix(domain, ".")
	for _, d := range localDomains {
		if strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}
