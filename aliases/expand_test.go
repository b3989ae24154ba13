package aliases

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeLists is a ListSource from a map.
type fakeLists map[string][]string

func (f fakeLists) ListMembers(_ context.Context, addr string) ([]string, bool, error) {
	if addr == "broken@example.org" {
		return nil, false, errors.New("database is locked")
	}
	m, ok := f[addr]
	return m, ok, nil
}

func expand(t *testing.T, x *Expander, addrs ...string) Result {
	t.Helper()
	res, err := x.Expand(context.Background(), addrs...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// loadString writes content to a file named aliases and loads it.
func loadString(t *testing.T, opts LoadOptions, content string) (*Table, Problems, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "aliases")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tb, probs := Load(opts, path)
	return tb, probs, path
}

func table(t *testing.T, opts LoadOptions, content string) *Table {
	t.Helper()
	tb, probs, _ := loadString(t, opts, content)
	if probs.Errors() > 0 {
		t.Fatalf("load: %v", probs)
	}
	return tb
}

// sendersOf maps each final target to its envelope sender.
func sendersOf(res Result) map[string]string {
	m := map[string]string{}
	for _, f := range res.Targets {
		m[f.String()] = f.Sender
	}
	return m
}

func TestOwner(t *testing.T) {
	x := &Expander{LocalDomains: []string{"example.org"}, Table: table(t, LoadOptions{}, `
x: a@r.example, y
owner-x: x-request
x-request: maint@r.example
y: b@r.example
owner-y: "|/bin/complex", c@r.example
z: d@r.example
owner-z: \z-admin
owner-w: ow@r.example
owner-owner: boss@r.example
`)}
	got := sendersOf(expand(t, x, "x", "owner-w", "x-request", "z"))
	want := map[string]string{
		"a@r.example":     "x-request@example.org", // the single value itself, not its expansion
		"b@r.example":     "owner-y@example.org",   // a value with , | " : the name owner-y
		"ow@r.example":    "boss@r.example",        // owner-NAME's own owner is owner-owner
		"maint@r.example": "",                      // x-request has no owner-x-request
		"d@r.example":     "owner-z@example.org",   // \z-admin is not a plain address
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("senders (-want +got):\n%s", diff)
	}
}

func TestDuplicateNames(t *testing.T) {
	const src = "list: a@r.example, b@r.example\nLIST: c@r.example\n"
	for _, tc := range []struct {
		opts LoadOptions
		want []string
		msg  string
	}{
		{LoadOptions{}, []string{"c@r.example"}, "this later definition wins"},
		{LoadOptions{Merge: true}, []string{"a@r.example", "b@r.example", "c@r.example"}, "values merged"},
	} {
		tb, probs, _ := loadString(t, tc.opts, src)
		if len(probs) != 1 || probs[0].Severity != Warning || probs[0].Pos.Line != 2 || !strings.Contains(probs[0].Msg, tc.msg) {
			t.Errorf("merge=%v: problems %v", tc.opts.Merge, probs)
		}
		res := expand(t, &Expander{Table: tb, LocalDomains: []string{"example.org"}}, "list")
		if diff := cmp.Diff(tc.want, res.Lines()); diff != "" {
			t.Errorf("merge=%v (-want +got):\n%s", tc.opts.Merge, diff)
		}
	}
}

func TestLists(t *testing.T) {
	x := &Expander{
		LocalDomains: []string{"example.org", "lists.example.org"},
		Table:        table(t, LoadOptions{}, "all: news@lists.example.org, staff\nstaff: s@r.example, all\n"),
		Lists: fakeLists{
			"news@lists.example.org": {"m1@r.example", "all@example.org", "bad@@x"},
			"solo@example.org":       {"m2@r.example"},
		},
	}
	res := expand(t, x, "all", "Solo")
	// all@example.org, a member of news, is the alias being expanded:
	// a loop, dropped.
	want := []string{"m1@r.example", "s@r.example", "m2@r.example"}
	if diff := cmp.Diff(want, res.Lines()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	wantFail := []Failure{{"news@lists.example.org", `member "bad@@x": more than one @ (quote the local part if it really contains @)`}}
	if diff := cmp.Diff(wantFail, res.Failures); diff != "" {
		t.Errorf("failures (-want +got):\n%s", diff)
	}
	if s := sendersOf(res); s["m1@r.example"] != "news-bounces@lists.example.org" || s["s@r.example"] != "" {
		t.Errorf("senders %v", s)
	}
	if _, err := x.Expand(context.Background(), "broken"); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("store error not returned: %v", err)
	}
}

// lines renders a result as the CLI prints it: targets, then failures.
func lines(res Result) []string {
	out := res.Lines()
	for _, f := range res.Failures {
		out = append(out, "ERROR: "+f.String())
	}
	return out
}

func TestIncludeAndSafety(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	write("members", "# staff\na@r.example, /tmp/x\n\nbad@@r.example\n:include:members\n  # not a comment\n", 0o644)
	main := write("aliases", "staff: :include:members\nself: :include:loop\narchive: /var/mail/archive\n", 0o644)
	write("loop", ":include:loop\n", 0o644)
	loose := write("loose", "prog: |/bin/true, ok@r.example\n", 0o664)

	tb, probs := Load(LoadOptions{}, main, loose)
	if len(probs) != 1 || probs[0].Severity != Warning || !strings.Contains(probs[0].Msg, "writable by group or others") {
		t.Fatalf("problems %v", probs)
	}
	var logged strings.Builder
	x := &Expander{Table: tb, LocalDomains: []string{"example.org"}, Log: slog.New(slog.NewTextHandler(&logged, nil))}
	want := []string{
		"a@r.example",
		"/var/mail/archive",
		"ok@r.example",
		"ERROR: " + dir + `/members:4: bad address "bad@@r.example": more than one @ (quote the local part if it really contains @)`,
		"ERROR: " + dir + `/members:6: "# not a comment": a # that does not start a line is not a comment (sendmail would read the address "#.not.a.comment"): put the comment on a line of its own that starts with #`,
		"ERROR: " + dir + "/members:2: /tmp/x: files in :include: files are refused (list them in the aliases file, or enable them for includes in the config)",
		"ERROR: " + loose + ":1: |/bin/true: programs from a file writable by group or others are refused (chmod go-w " + loose + ")",
	}
	if diff := cmp.Diff(want, lines(expand(t, x, "staff", "self", "archive", "prog"))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := strings.Count(logged.String(), "msg=\"alias expansion\""); n != 4 {
		t.Errorf("%d failures logged, want 4:\n%s", n, logged.String())
	}
	x.AllowIncludeExec = true
	if got := expand(t, x, "staff").Lines(); !slices.Contains(got, "/tmp/x") {
		t.Errorf("AllowIncludeExec: %v", got)
	}
	os.Chmod(filepath.Join(dir, "members"), 0o666)
	wantLine := "ERROR: " + dir + "/members:2: /tmp/x: files from a file writable by group or others are refused (chmod go-w " + dir + "/members)"
	if got := lines(expand(t, x, "staff")); !slices.Contains(got, wantLine) {
		t.Errorf("world-writable include: %v", got)
	}
}

// TestLocalNames: local names are lowercased and printed bare, with the
// +detail sendmail's local mailer gets; addresses in class w are local
// names; remote addresses are printed as written.
func TestLocalNames(t *testing.T) {
	x := &Expander{
		Table:        table(t, LoadOptions{}, "PostMaster: \\Root\nlist: l@r.example\nlist+*: star@r.example\nexact+tag: e@r.example\n"),
		LocalDomains: ClassW("Mail.Example.ORG", "example.org"),
	}
	tests := []struct {
		in   string
		want []string
	}{
		{"postmaster@LOCALHOST", []string{"root"}},
		{"POSTMASTER", []string{"root"}},
		{"Bob", []string{"bob"}},
		{"nobody@Mail.Example.Org.", []string{"nobody"}},
		{"Carol@Example.COM", []string{"Carol@Example.COM"}},
		{`"Dave"@R.Example`, []string{`"Dave"@R.Example`}},
		{`"Dave"@example.org`, []string{"dave"}},
		{"carol+Tag", []string{"carol+tag"}},
		{"carol+", []string{"carol"}},
		{"carol+*", []string{"carol"}},
		{"list+tag@example.org", []string{"star@r.example"}},
		{"exact+tag", []string{"e@r.example"}},
		{"exact+other", []string{"exact+other"}},
		{"list@other.example", []string{"list@other.example"}},
		{"Full Name <list@localhost>", []string{"l@r.example"}},
		{`\list`, []string{"ERROR: \\list: user unknown: \\list names the local mailbox list, and fanmail has none for an alias name: drop the backslash"}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, lines(expand(t, x, tc.in))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.in, diff)
		}
	}
}

// TestLoops: a name met again inside its own expansion. A longer loop
// is dropped, and only when nothing at all is left is it reported;
// list: list names the local mailbox list, which an alias name is not.
func TestLoops(t *testing.T) {
	x := &Expander{Table: table(t, LoadOptions{}, "a: b\nb: a\nlist: list, o@r.example\nc: d, x@r.example\nd: c\nnone: (just a comment)\n"),
		LocalDomains: []string{"example.org"}}
	loop := "aliasing/forwarding loop broken (it expands to nothing: every target is a loop back, a duplicate or an empty :include:)"
	tests := []struct {
		in   []string
		want []string
	}{
		{[]string{"a"}, []string{"ERROR: a: " + loop}},
		{[]string{"a", "b"}, []string{"ERROR: a: " + loop}},
		{[]string{"x@r.example", "a"}, []string{"x@r.example"}},
		{[]string{"c"}, []string{"x@r.example"}},
		{[]string{"none"}, []string{"ERROR: none: " + loop}},
		{[]string{"list"}, []string{"o@r.example", "ERROR: list: user unknown: an alias that names itself is delivered to the local mailbox of that name, as in sendmail, and fanmail has none for an alias name: remove list from its own value"}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, lines(expand(t, x, tc.in...))); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tc.in, diff)
		}
	}
}

// TestDetailDepth: each +detail fallback costs an alias level, as
// sendmail's ruleset 5 rewrites do.
func TestDetailDepth(t *testing.T) {
	x := &Expander{Table: table(t, LoadOptions{}, "a: b\nb: c\nc: end@r.example\n"), LocalDomains: []string{"example.org"}, MaxDepth: 4}
	if got := lines(expand(t, x, "a+x")); !slices.Equal(got, []string{"ERROR: end@r.example: aliasing/forwarding loop broken (5 aliases deep; 4 max)"}) {
		t.Errorf("a+x: %v", got)
	}
	if got := lines(expand(t, x, "b+x")); !slices.Equal(got, []string{"end@r.example"}) {
		t.Errorf("b+x: %v", got)
	}
}

// TestRefusedEntry: a name whose entry was refused expands to an error,
// never to a local mailbox of that name.
func TestRefusedEntry(t *testing.T) {
	tb, probs, path := loadString(t, LoadOptions{}, "empty:\nblanks: alice bob carol@r.example\nok: o@r.example\n")
	if probs.Errors() != 2 {
		t.Fatalf("problems %v", probs)
	}
	x := &Expander{Table: tb, LocalDomains: []string{"example.org"}}
	want := []string{"o@r.example",
		"ERROR: empty: user unknown: its alias at " + path + ":1 was refused (see the error there), and fanmail has no local mailbox of that name",
		"ERROR: blanks: user unknown: its alias at " + path + ":2 was refused (see the error there), and fanmail has no local mailbox of that name"}
	if diff := cmp.Diff(want, lines(expand(t, x, "ok", "empty", "blanks"))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if tb.Resolve("empty") || !tb.Resolve("OK") {
		t.Error("Resolve")
	}
}

func TestClassW(t *testing.T) {
	for _, tc := range []struct {
		host    string
		domains []string
		want    []string
	}{
		{"Mail.Example.org", nil, []string{"mail.example.org", "localhost"}},
		{"mail.example.org", []string{"Example.ORG", "lists.example.org"}, []string{"example.org", "lists.example.org", "mail.example.org", "localhost"}},
		{"localhost", []string{"mail.example.org."}, []string{"mail.example.org", "localhost"}},
	} {
		if diff := cmp.Diff(tc.want, ClassW(tc.host, tc.domains...)); diff != "" {
			t.Errorf("ClassW(%q, %q) (-want +got):\n%s", tc.host, tc.domains, diff)
		}
	}
}

func TestResolve(t *testing.T) {
	tb := table(t, LoadOptions{}, "postmaster: root\nlist+*: a@r.example\nplain: b@r.example\n")
	for local, want := range map[string]bool{
		"PostMaster": true,
		"list+x":     true,
		"list":       false,
		"plain+x":    true,
		"plain+":     true,
		"nobody":     false,
		"nobody+x":   false,
		"+plain":     false,
	} {
		if got := tb.Resolve(local); got != want {
			t.Errorf("Resolve(%q) = %v, want %v", local, got, want)
		}
	}
}

// TestConcurrentExpand: one Table and Expander serve many expansions at
// once (run with -race).
func TestConcurrentExpand(t *testing.T) {
	x := &Expander{Table: table(t, LoadOptions{}, "a: b, c@r.example\nb: d@r.example, a\n"), LocalDomains: []string{"example.org"}}
	done := make(chan []string)
	for range 8 {
		go func() {
			res, _ := x.Expand(context.Background(), "a")
			done <- lines(res)
		}()
	}
	for range 8 {
		if got := <-done; strings.Join(got, " ") != "d@r.example c@r.example" {
			t.Errorf("got %v", got)
		}
	}
}
