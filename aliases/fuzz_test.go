package aliases

import (
	"strings"
	"testing"
)

// FuzzParse checks that parsing never panics, that every entry it
// returns is usable, and that each target prints in a form that parses
// back to the same target.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"postmaster: root\n",
		"list: a@example.org, b,\n\tc@example.org\r\n",
		"# comment\n\nx: \\x, \"|/usr/bin/prog arg\", /var/mail/x, :include:/etc/l\n",
		"\"john doe\": \"john doe\"@example.org\n",
		"a: b\\\n, c\n",
		"bad line\n  indented\n",
		"x: Full Name <f@example.org> (comment), \"unterminated\n",
		"x@example.org: \"Carol C\" <carol@example.org>, list+tag, <<a@b.example>\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := parseFile([]byte(s), "fuzz", classW)
		for _, pr := range p.probs {
			if pr.Pos.File != "fuzz" || pr.Msg == "" {
				t.Fatalf("bad problem %+v", pr)
			}
		}
		for _, e := range p.entries {
			if e.Name == "" || e.Name != strings.ToLower(e.Name) {
				t.Fatalf("bad entry %+v", e)
			}
			for _, tg := range e.Targets {
				back, _, err := parseTarget(tg.String())
				if err != nil {
					t.Fatalf("target %+v prints as %q, which does not parse: %v", tg, tg.String(), err)
				}
				back.Pos = tg.Pos
				if back != tg {
					t.Fatalf("target %+v prints as %q, which parses as %+v", tg, tg.String(), back)
				}
			}
		}
		parseInclude([]byte(s), "fuzz")
	})
}
