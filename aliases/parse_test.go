package aliases

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var classW = ClassW("mail.example.org", "example.org")

// entriesOf renders the entries of a parse as "name kind target pos".
func entriesOf(p parsed) []string {
	var got []string
	for _, e := range p.entries {
		for _, tg := range e.Targets {
			got = append(got, e.Name+" "+tg.Kind.String()+" "+tg.String()+" "+tg.Pos.String())
		}
	}
	return got
}

func TestParseForms(t *testing.T) {
	src := "# forms\n" +
		`Mixed.Case: Full Name <f@r.example> (a comment), "john doe"@r.example, \root` + "\n" +
		`"john doe": :INCLUDE: /etc/l , "|/usr/bin/prog a,b", "/var/mail/x y", "jane roe"` + "\n" +
		"cont: a@r.example,\\\n  b@r.example\n" +
		`display: "Carol C" <carol@example.org>, Dave D <Dave@R.Example.>, <<e@r.example>>, "Q, C" <q@r.example>, x <y@r.example> <z@r.example>` + "\n" +
		"x@Example.ORG: a @ r.example, bob . smith@r.example, |/bin/echo (comment)\n"
	p := parseFile([]byte(src), "f", classW)
	if len(p.probs) != 0 {
		t.Fatalf("problems: %v", p.probs)
	}
	want := []string{
		"mixed.case address f@r.example f:2",
		`mixed.case address "john doe"@r.example f:2`,
		`mixed.case local \root f:2`,
		"john doe include :include:/etc/l f:3",
		`john doe program "|/usr/bin/prog a,b" f:3`,
		`john doe file "/var/mail/x y" f:3`,
		`john doe local "jane roe" f:3`,
		"cont address a@r.example f:4",
		"cont address b@r.example f:5",
		"display address carol@example.org f:6",
		"display address Dave@R.Example f:6",
		"display address e@r.example f:6",
		"display address q@r.example f:6",
		"display address z@r.example f:6",
		"x address a@r.example f:7",
		"x address bob.smith@r.example f:7",
		"x program |/bin/echo f:7",
	}
	if diff := cmp.Diff(want, entriesOf(p)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestReadaliasesRules: which physical lines make an entry, as sendmail
// 8.17's readaliases joins them.
func TestReadaliasesRules(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		probs    []string
	}{
		{"indented lines continue", "a: x@r.example,\n  y@r.example,\n\tz@r.example\n",
			[]string{"a address x@r.example f:1", "a address y@r.example f:2", "a address z@r.example f:3"}, nil},
		{"backslash joins the next line as it is", "a: x@r.example, \\\ny@r.example\n",
			[]string{"a address x@r.example f:1", "a address y@r.example f:2"}, nil},
		{"a double backslash joins too", "a: x@r.example,\\\\\ny@r.example\n",
			[]string{"a address x@r.example f:1", `a address \y@r.example f:1`}, nil},
		{"blank line ends the entry", "a: x@r.example,\n\n  y@r.example\nb: z@r.example\n",
			[]string{"a address x@r.example f:1", "b address z@r.example f:4"},
			[]string{"ERROR: f:3: line starts with a blank but continues no entry (a blank line or the start of the file ends an entry): remove the leading blanks, or the blank line above it"}},
		{"indented first line", "  a: x@r.example\nb: z@r.example\n",
			[]string{"b address z@r.example f:2"},
			[]string{"ERROR: f:1: line starts with a blank but continues no entry (a blank line or the start of the file ends an entry): remove the leading blanks, or the blank line above it"}},
		{"blanks only after a blank line", "a: x@r.example\n\n   \n",
			[]string{"a address x@r.example f:1"},
			[]string{"WARNING: f:3: line of blanks after a blank line (sendmail reports it as a non-continuation line): empty it"}},
		{"comment swallows indented lines", "a: x@r.example,\n# gone\n  y@r.example\nb: z@r.example\n",
			[]string{"a address x@r.example f:1", "b address z@r.example f:4"},
			[]string{"WARNING: f:3: line continues the comment above it (an indented line, or one after a backslash, joins the line before, as in sendmail), so it is ignored: remove the leading blanks, or the comment"}},
		{"comment ending in a backslash swallows the next line", "# note \\\nb: z@r.example\nc: c@r.example\n",
			[]string{"c address c@r.example f:3"},
			[]string{"WARNING: f:2: line continues the comment above it (an indented line, or one after a backslash, joins the line before, as in sendmail), so it is ignored: remove the leading blanks, or the comment"}},
		{"indented # line is part of the value", "a: x@r.example,\n  # note\n  y@r.example\n",
			[]string{"a address x@r.example f:1"},
			[]string{`ERROR: f:2: "# note  y@r.example": a # that does not start a line is not a comment (sendmail would read the address "#.note.y@r.example"): put the comment on a line of its own that starts with #`}},
		{"continuation decides the name", "nocolon\n  cont: x@r.example\n", nil,
			[]string{`ERROR: f:1: illegal alias name "nocolon  cont": contains blanks (sendmail would read "nocolon.cont"): quote it ("john doe": ...) or join the words with a dot`}},
		{"CRLF", "a: x@r.example,\r\n  y@r.example\r\n",
			[]string{"a address x@r.example f:1", "a address y@r.example f:2"}, nil},
		{"empty values between commas", "a: ,x@r.example,, y@r.example,\n",
			[]string{"a address x@r.example f:1", "a address y@r.example f:1"}, nil},
	}
	for _, tc := range tests {
		p := parseFile([]byte(tc.in), "f", classW)
		var probs []string
		for _, pr := range p.probs {
			probs = append(probs, pr.String())
		}
		if diff := cmp.Diff(tc.want, entriesOf(p)); diff != "" {
			t.Errorf("%s: entries (-want +got):\n%s", tc.name, diff)
		}
		if diff := cmp.Diff(tc.probs, probs); diff != "" {
			t.Errorf("%s: problems (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"x@remote.example: y", `ERROR: f:1: illegal alias name "x@remote.example": cannot alias non-local names: remote.example is not a local domain (write just the part before @)`},
		{"john doe: y", `ERROR: f:1: illegal alias name "john doe": contains blanks (sendmail would read "john.doe"): quote it ("john doe": ...) or join the words with a dot`},
		{`"john: y`, `ERROR: f:1: illegal alias name "\"john": unterminated quoted string "john (add the closing ")`},
		{"|prog: y", `ERROR: f:1: illegal alias name "|prog": a name is a local part: no \, |, / or :include: on the left of the colon`},
		{"no colon", "ERROR: f:1: missing colon (write NAME: VALUE, ...)"},
		{"x:", "ERROR: f:1: missing value for alias x (write at least one target after the colon)"},
		{"x: \t ", "ERROR: f:1: missing value for alias x (write at least one target after the colon)"},
		{"x: |", "ERROR: f:1: empty program after | (write |/path/to/program, in quotes if it has arguments)"},
		{"x: |/usr/bin/prog --list x", `ERROR: f:1: |/usr/bin/prog --list x has blanks outside quotes (sendmail would drop them or join the words with "."): quote it: "|/usr/bin/prog --list x"`},
		{"x: /var/mail/a b", `ERROR: f:1: /var/mail/a b has blanks outside quotes (sendmail would drop them or join the words with "."): quote it: "/var/mail/a b"`},
		{"x: :include:", "ERROR: f:1: empty :include: path (write :include:/path/to/file)"},
		{"x: alice bob carol@r.example", `ERROR: f:1: "alice bob carol@r.example": blanks inside an address (sendmail would read "alice.bob.carol@r.example"): separate addresses with commas, or quote a name that has blanks`},
		{"x: error:nouser No such user", `ERROR: f:1: "error:nouser No such user": blanks inside an address (sendmail would read "error:nouser.No.such.user"): separate addresses with commas, or quote a name that has blanks`},
		{`x: a\ b c@r.example`, `ERROR: f:1: "a\\ b c@r.example": blanks inside an address (sendmail would read "a\\ b.c@r.example"): separate addresses with commas, or quote a name that has blanks`},
		{"x: error:nouser", `ERROR: f:1: bad local name "error:nouser": invalid character ':' in local part (fanmail knows names, addresses, :include:/path, |program and /file; error: is not an aliases(5) target)`},
		{`x: "a@r.example`, `ERROR: f:1: alias x: unterminated quoted string "a@r.example (add the closing ")`},
		{"x: a (comment", `ERROR: f:1: alias x: unterminated comment (comment (add the closing ")")`},
		{"x: /var/mail/", "ERROR: f:1: file target /var/mail/ is a directory (name a file to append to)"},
		{"x: \xff", `ERROR: f:1: invalid UTF-8 in "\xff" (save the file as UTF-8)`},
		{"x: bad@@r.example", `ERROR: f:1: bad address "bad@@r.example": more than one @ (quote the local part if it really contains @)`},
		{"x: <>", `ERROR: f:1: empty <> in "<>" (give the address inside <>)`},
		{"x: ,", "WARNING: f:1: alias x has no target: mail to it goes nowhere"},
		{"x: Name <a@r.example", `WARNING: f:1: "Name <a@r.example": unbalanced '<' (read as a@r.example, as sendmail does; add the closing >)`},
		{"x: a@r.example>", `WARNING: f:1: "a@r.example>": unbalanced '>' (read as a@r.example, as sendmail does; remove it)`},
	}
	for _, tc := range tests {
		p := parseFile([]byte(tc.in+"\n"), "f", classW)
		var got []string
		for _, pr := range p.probs {
			got = append(got, pr.String())
		}
		if diff := cmp.Diff([]string{tc.want}, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
}

// TestParseKeepsGoing: one bad entry does not hide the others.
func TestParseKeepsGoing(t *testing.T) {
	p := parseFile([]byte("a: x@r.example\nbad\nb: y@r.example, z@@r.example,\n c@r.example\n"), "f", classW)
	if len(p.entries) != 2 || len(p.entries[1].Targets) != 2 || p.probs.Errors() != 2 {
		t.Errorf("entries %v problems %v", p.entries, p.probs)
	}
}

// TestParseInclude: an :include: file has no continuation lines, and
// only a # in column 1 starts a comment.
func TestParseInclude(t *testing.T) {
	targets, probs := parseInclude([]byte("# members\na@r.example, b@r.example\n  c@r.example\n\t\n  # not a comment\nd@r.example # nor this\n"), "inc")
	var got []string
	for _, tg := range targets {
		got = append(got, tg.String()+" "+tg.Pos.String())
	}
	if diff := cmp.Diff([]string{"a@r.example inc:2", "b@r.example inc:2", "c@r.example inc:3"}, got); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
	var msgs []string
	for _, p := range probs {
		msgs = append(msgs, p.String())
	}
	want := []string{
		`ERROR: inc:5: "# not a comment": a # that does not start a line is not a comment (sendmail would read the address "#.not.a.comment"): put the comment on a line of its own that starts with #`,
		`ERROR: inc:6: "d@r.example # nor this": blanks inside an address (sendmail would read "d@r.example.#.nor.this"): separate addresses with commas, or quote a name that has blanks`,
	}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if strings.Contains(msgs[0], "\n") {
		t.Error("multi-line message")
	}
}

// TestDeliberateDifferences: an entry over sendmail's 8 KiB line buffer
// is read whole, and UTF-8 is kept as written (sendmail refuses the
// first with "alias line too long" and strips the 8th bit of the second).
func TestDeliberateDifferences(t *testing.T) {
	var b strings.Builder
	b.WriteString("big: first@r.example")
	for i := range 2000 {
		b.WriteString(",\n  m" + strings.Repeat("x", i%10) + "@r.example")
	}
	b.WriteString("\ncafé: café@r.example, josé\n")
	p := parseFile([]byte(b.String()), "f", classW)
	if len(p.probs) != 0 || len(p.entries) != 2 {
		t.Fatalf("problems %v, %d entries", p.probs, len(p.entries))
	}
	if n := len(p.entries[0].Targets); n != 2001 {
		t.Errorf("big has %d targets, want 2001", n)
	}
	if got := entriesOf(parsed{entries: p.entries[1:]}); !cmp.Equal(got, []string{"café address café@r.example f:2002", "café local josé f:2002"}) {
		t.Errorf("UTF-8: %v", got)
	}
}
