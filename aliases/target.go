package aliases

import (
	"fmt"
	"strings"
	"unicode"

	"fanmail/address"
)

// Kind says what a target of an alias is.
type Kind uint8

const (
	Local   Kind = iota // a local name, looked up again unless NoAlias
	Address             // local@domain
	Include             // :include:/path, a file of further targets
	Program             // |command, run with the message on stdin
	File                // /path, the message appended in mbox format
)

var kindNames = [...]string{"local", "address", "include", "program", "file"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Pos is where something was written: FILE:LINE.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File // about the whole file
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Target is one value on the right of an alias, or one item of an
// :include: file.
type Target struct {
	Kind Kind
	// Value is the name as written (unquoted) for Local, the address as
	// written (blanks, comments and <> removed) for Address, the path
	// for Include and File, and the command line without the "|" for
	// Program.
	Value   string
	NoAlias bool // written \name: deliver to the name, do not look it up
	Pos     Pos  // the line the value starts on
}

// String returns the target as it would be written in an aliases file.
func (t Target) String() string {
	s := t.Value
	switch t.Kind {
	case Local:
		s = quoteName(t.Value)
	case Include:
		return ":include:" + t.Value
	case Program:
		return quoteExec("|" + t.Value)
	case File:
		return quoteExec(s)
	}
	if t.NoAlias {
		return `\` + s
	}
	return s
}

// Entry is one alias: a name and its targets, in file order.
type Entry struct {
	Name    string // lowercased, unquoted
	Targets []Target
	Pos     Pos
}

// Severity tells a warning (the entry is still used) from an error (the
// entry or the value it concerns is refused) and from a fatal problem
// (the file could not be read, so none of it is used).
type Severity uint8

const (
	Warning Severity = iota
	Error
	Fatal
)

// Problem is one thing wrong with an aliases or :include: file.
type Problem struct {
	Pos      Pos
	Severity Severity
	Msg      string
}

// String prints the problem as fanmail's diagnostics do:
// "ERROR: FILE:LINE: message" or "WARNING: FILE:LINE: message".
func (p Problem) String() string {
	sev := "WARNING"
	if p.Severity != Warning {
		sev = "ERROR"
	}
	return fmt.Sprintf("%s: %s: %s", sev, p.Pos, p.Msg)
}

// Problems is a list of problems in file order.
type Problems []Problem

// Errors counts the problems of severity Error or Fatal.
func (ps Problems) Errors() int {
	n := 0
	for _, p := range ps {
		if p.Severity != Warning {
			n++
		}
	}
	return n
}

// Fatal counts the files that could not be read at all.
func (ps Problems) Fatal() int {
	n := 0
	for _, p := range ps {
		if p.Severity == Fatal {
			n++
		}
	}
	return n
}

// quoteName writes a name as an aliases file needs it: a dot-atom bare,
// anything else quoted as an RFC 5321 local part.
func quoteName(s string) string {
	q := strings.TrimSuffix(address.Mailbox{Local: s, Domain: "x"}.String(), "@x")
	if q != "" && (q[0] == '|' || q[0] == '/' || q[0] == '#' || q[0] == '\\' || strings.HasPrefix(strings.ToLower(q), ":include:")) {
		return quote(s)
	}
	return q
}

// quote writes s as a quoted string.
// quoteExec writes a program or file target so that it reads back the
// same: quoted when it holds a blank of any kind (a vertical tab at the
// end of a quoted file name would otherwise be trimmed off on reading)
// or a character that separates or comments targets.
func quoteExec(s string) string {
	if strings.ContainsAny(s, ",\"\\()<>") || strings.ContainsFunc(s, unicode.IsSpace) {
		return quote(s)
	}
	return s
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
