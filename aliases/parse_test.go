package aliases

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseForms(t *testing.T) {
	src := "# forms\n" +
		`Mixed.Case: Full Name <f@r.example> (a comment), "john doe"@r.example, \root` + "\n" +
		`"john doe": :INCLUDE: /etc/l , "|/usr/bin/prog a,b", "/var/mail/x y", "jane roe"` + "\n" +
		"cont: a@r.example,\\\n  b@r.example\n"
	entries, probs := Parse(strings.NewReader(src), "f")
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	var got []string
	for _, e := range entries {
		for _, tg := range e.Targets {
			got = append(got, e.Name+" "+tg.Kind.String()+" "+tg.String()+" "+tg.Pos.String())
		}
	}
	want := []string{
		"mixed.case address f@r.example f:2",
		`mixed.case address "john doe"@r.example f:2`,
		`mixed.case local \root f:2`,
		"john doe include :include:/etc/l f:3",
		"john doe program |/usr/bin/prog a,b f:3",
		"john doe file /var/mail/x y f:3",
		`john doe local "jane roe" f:3`,
		"cont address a@r.example f:4",
		"cont address b@r.example f:4",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"x@example.org: y", "f:1: error: illegal alias name \"x@example.org\": has a domain: an alias name is a local part (write just the part before @)"},
		{"john doe: y", `f:1: error: illegal alias name "john doe": contains blanks (quote it: "john doe": ...)`},
		{`"john: y`, `f:1: error: unterminated quoted name (add the closing ")`},
		{`"john" y`, `f:1: error: missing colon after alias name "john" (write NAME: VALUE, ...)`},
		{"x: |", "f:1: error: empty program after | (write |/path/to/program args, quoted if it contains a comma)"},
		{"x: :include:", "f:1: error: empty :include: path (write :include:/path/to/file)"},
		{"x: error:nouser No such user", `f:1: error: bad local name "error:nouser No such user": invalid character ':' in local part (fanmail knows names, addresses, :include:/path, |program and /file; error: is not an aliases(5) target)`},
		{`x: "a@r.example`, `f:1: error: unterminated quoted string in "\"a@r.example" (add the closing ")`},
		{"x: a (comment", `f:1: error: unterminated comment in "a" (add the closing ")")`},
		{"x: /var/mail/", "f:1: error: file target /var/mail/ is a directory (name a file to append to)"},
		{"x: \xff", "f:1: error: invalid UTF-8 (save the file as UTF-8)"},
		{"x: ,", "f:1: error: no usable value for alias x"},
	}
	for _, tc := range tests {
		_, probs := Parse(strings.NewReader(tc.in+"\n"), "f")
		var got []string
		for _, p := range probs {
			got = append(got, p.String())
		}
		if diff := cmp.Diff([]string{tc.want}, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
}

// TestParseKeepsGoing: one bad entry does not hide the others.
func TestParseKeepsGoing(t *testing.T) {
	entries, probs := Parse(strings.NewReader("a: x@r.example\nbad\nb: y@r.example, z@@r.example,\n c@r.example\n"), "f")
	if len(entries) != 2 || len(entries[1].Targets) != 2 || probs.Errors() != 2 {
		t.Errorf("entries %v problems %v", entries, probs)
	}
}
