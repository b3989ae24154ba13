package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"fanmail/internal/pgtest"
)

// TestMigrateEndToEnd: `fanmail migrate` copies a node's SQLite store
// into PostgreSQL, where a node configured with [lists] database sees
// the same lists, members and settings, and back into a new SQLite
// file; it refuses a target that holds data, a missing source, and the
// same store twice, changing nothing.
func TestMigrateEndToEnd(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t)
	db := c.NewDatabase(t)
	n := newFakeNet(t, testDomains(2), nil)
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := n.writeConfig(t, dataDir, "")
	members := makeList(t, cfg, e2eList, testDomains(2), []int{40, 25})
	fanmailCLI(t, cfg, "", "list", "create", "talk@lists.example.org", "--owner", "owner@d00.test")
	fanmailCLI(t, cfg, "", "list", "set", "talk@lists.example.org", "subject_prefix=[talk]")
	sqlite := filepath.Join(dataDir, "lists.db")

	out, err := runBinary(t, "migrate", "--from", "sqlite:"+sqlite, "--to", db)
	if err != nil {
		t.Fatalf("migrate to PostgreSQL: %v\n%s", err, out)
	}
	for _, want := range []string{"lists  2", "members  65", "settings  2", "every table's count verified"} {
		if !strings.Contains(collapse(out), want) {
			t.Errorf("migrate output lacks %q:\n%s", want, out)
		}
	}
	pgCfg := n.writeConfig(t, filepath.Join(t.TempDir(), "other"), fmt.Sprintf("[lists]\ndatabase = %q\n", db))
	if diff := cmp.Diff(members, strings.Fields(fanmailCLI(t, pgCfg, "", "member", "ls", e2eList))); diff != "" {
		t.Errorf("members in PostgreSQL (-want +got):\n%s", diff)
	}
	if show := fanmailCLI(t, pgCfg, "", "list", "show", "talk@lists.example.org"); !strings.Contains(show, "[talk]") {
		t.Errorf("settings not copied:\n%s", show)
	}

	back := filepath.Join(t.TempDir(), "lists.db")
	if out, err := runBinary(t, "migrate", "--from", db, "--to", back); err != nil {
		t.Fatalf("migrate back to SQLite: %v\n%s", err, out)
	}
	backCfg := n.writeConfig(t, filepath.Join(t.TempDir(), "back"), fmt.Sprintf("[lists]\ndatabase = %q\n", "sqlite:"+back))
	if diff := cmp.Diff(members, strings.Fields(fanmailCLI(t, backCfg, "", "member", "ls", e2eList))); diff != "" {
		t.Errorf("members back in SQLite (-want +got):\n%s", diff)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", sqlite, "--to", db}, "target store is not empty"},
		{[]string{"--from", "sqlite:" + filepath.Join(dataDir, "nope.db"), "--to", c.NewDatabase(t)}, "nope.db: no such file"},
		{[]string{"--from", sqlite, "--to", "sqlite:" + sqlite}, "--from and --to are the same store"},
		{[]string{"--from", sqlite}, `Required flag "to" not set`},
	} {
		out, err := runBinary(t, append([]string{"migrate"}, tt.args...)...)
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("migrate %v = %v\n%s\nwant an error containing %q", tt.args, err, out, tt.want)
		}
	}
	if diff := cmp.Diff(members, strings.Fields(fanmailCLI(t, pgCfg, "", "member", "ls", e2eList))); diff != "" {
		t.Errorf("members in PostgreSQL after the refused copy (-want +got):\n%s", diff)
	}
}

// collapse turns runs of spaces into two, so right-aligned columns
// compare as "name  count".
func collapse(s string) string {
	for strings.Contains(s, "   ") {
		s = strings.ReplaceAll(s, "   ", "  ")
	}
	return s
}
