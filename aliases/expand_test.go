package aliases

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
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

func table(t *testing.T, opts LoadOptions, content string) *Table {
	t.Helper()
	tb, probs := LoadReader(opts, strings.NewReader(content), "aliases")
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
		tb, probs := LoadReader(tc.opts, strings.NewReader(src), "aliases")
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
	want := []string{"m1@r.example", "all@example.org", "s@r.example", "m2@r.example",
		`ERROR: news@lists.example.org: member "bad@@x": more than one @ (quote the local part if it really contains @)`}
	if diff := cmp.Diff(want, res.Lines()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if s := sendersOf(res); s["m1@r.example"] != "owner-news@lists.example.org" || s["s@r.example"] != "" {
		t.Errorf("senders %v", s)
	}
	if _, err := x.Expand(context.Background(), "broken"); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("store error not returned: %v", err)
	}
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
	write("members", "# staff\na@r.example, /tmp/x\n\nbad@@r.example\n:include:members\n", 0o644)
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
		"ERROR: " + dir + "/members:2: /tmp/x: files in :include: files are refused (list them in the aliases file, or enable them for includes in the config)",
		"ERROR: " + loose + ":1: |/bin/true: programs from a file writable by group or others are refused (chmod go-w " + loose + ")",
	}
	if diff := cmp.Diff(want, expand(t, x, "staff", "self", "archive", "prog").Lines()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := strings.Count(logged.String(), "msg=\"alias expansion\""); n != 3 {
		t.Errorf("%d failures logged, want 3:\n%s", n, logged.String())
	}
	x.AllowIncludeExec = true
	if got := expand(t, x, "staff").Lines(); !slicesContain(got, "/tmp/x") {
		t.Errorf("AllowIncludeExec: %v", got)
	}
	os.Chmod(filepath.Join(dir, "members"), 0o666)
	wantLine := "ERROR: " + dir + "/members:2: /tmp/x: files from a file writable by group or others are refused (chmod go-w " + dir + "/members)"
	if got := expand(t, x, "staff").Lines(); !slicesContain(got, wantLine) {
		t.Errorf("world-writable include: %v", got)
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestCaseAndLocalDomains(t *testing.T) {
	x := &Expander{Table: table(t, LoadOptions{}, "PostMaster: \\Root\n"), LocalDomains: []string{"Example.ORG", "localhost"}}
	want := []string{"Root@example.org", "nobody@example.org", "postmaster@other.example"}
	got := expand(t, x, "postmaster@LOCALHOST", "POSTMASTER", "nobody", "postmaster@other.example").Lines()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if e, ok := x.Table.Lookup("POSTMASTER"); !ok || e.Name != "postmaster" {
		t.Errorf("Lookup: %v %v", e, ok)
	}
}

func TestAccepts(t *testing.T) {
	x := &Expander{
		Table:        table(t, LoadOptions{}, "postmaster: root\n"),
		LocalDomains: []string{"example.org"},
		Lists:        fakeLists{"news@example.org": {"a@r.example"}},
	}
	for addr, want := range map[string]bool{
		"PostMaster@Example.org": true,
		"news@example.org":       true,
		"nobody@example.org":     false,
		"postmaster@r.example":   false,
		"not an address":         false,
	} {
		if got, err := x.Accepts(context.Background(), addr); got != want || err != nil {
			t.Errorf("Accepts(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	if _, err := x.Accepts(context.Background(), "broken@example.org"); err == nil {
		t.Error("store error not returned")
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
			done <- res.Lines()
		}()
	}
	for range 8 {
		if got := <-done; strings.Join(got, " ") != "d@r.example a@example.org c@r.example" {
			t.Errorf("got %v", got)
		}
	}
}
