package aliases

import (
	"fmt"
	"strings"

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
	// Value is the name as written (unquoted) for Local, the normalized
	// address for Address, the path for Include and File, and the command
	// line without the "|" for Program.
	Value   string
	NoAlias bool // written \name: deliver to the name, do not look it up
	Pos     Pos
}

// String returns the target as it would be written in an aliases file.
func (t Target) String() string {
	switch t.Kind {
	case Local:
		s := quoteName(t.Value)
		if t.NoAlias {
			return `\` + s
		}
		return s
	case Address:
		if t.NoAlias {
			return `\` + t.Value
		}
	case Include:
		return ":include:" + t.Value
	case Program:
		return "|" + t.Value
	}
	return t.Value
}

// Entry is one alias: a name and its targets, in file order.
type Entry struct {
	Name    string // lowercased, unquoted
	Targets []Target
	Pos     Pos
}

// Severity tells a warning (the entry is still used) from an error (the
// entry or the value it concerns is dropped).
type Severity uint8

const (
	Warning Severity = iota
	Error
)

// Problem is one thing wrong with an aliases or :include: file.
type Problem struct {
	Pos      Pos
	Severity Severity
	Msg      string
}

func (p Problem) String() string {
	sev := "warning"
	if p.Severity == Error {
		sev = "error"
	}
	return fmt.Sprintf("%s: %s: %s", p.Pos, sev, p.Msg)
}

// Problems is a list of problems in file order.
type Problems []Problem

// Errors counts the problems of severity Error.
func (ps Problems) Errors() int {
	n := 0
	for _, p := range ps {
		if p.Severity == Error {
			n++
		}
	}
	return n
}

// quoteName writes a name as an aliases file needs it: a dot-atom bare,
// anything else quoted as an RFC 5321 local part.
func quoteName(s string) string {
	q := strings.TrimSuffix(address.Mailbox{Local: s, Domain: "x"}.String(), "@x")
	if q != "" && (q[0] == '|' || q[0] == '/') {
		return `"` + q + `"`
	}
	return q
}
