package aliases

import (
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every entry it returns
// is usable, and that each target prints in a form that parses back to
// the same target.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"postmaster: root\n",
		"list: a@example.org, b,\n\tc@example.org\r\n",
		"# comment\n\nx: \\x, \"|/usr/bin/prog arg\", /var/mail/x, :include:/etc/l\n",
		"\"john doe\": \"john doe\"@example.org\n",
		"a: b\\\n, c\n",
		"bad line\n  indented\n",
		"x: Full Name <f@example.org> (comment), \"unterminated\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		entries, probs := Parse(strings.NewReader(s), "fuzz")
		for _, p := range probs {
			if p.Pos.File != "fuzz" || p.Msg == "" {
				t.Fatalf("bad problem %+v", p)
			}
		}
		for _, e := range entries {
			if e.Name == "" || len(e.Targets) == 0 || e.Name != strings.ToLower(e.Name) {
				t.Fatalf("bad entry %+v", e)
			}
			for _, tg := range e.Targets {
				back, err := parseTarget(tg.String())
				if err != nil {
					t.Fatalf("target %+v prints as %q, which does not parse: %v", tg, tg.String(), err)
				}
				back.Pos = tg.Pos
				if back != tg {
					t.Fatalf("target %+v prints as %q, which parses as %+v", tg, tg.String(), back)
				}
			}
		}
		ParseInclude(strings.NewReader(s), "fuzz")
	})
}
