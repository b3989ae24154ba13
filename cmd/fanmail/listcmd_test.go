package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// step is one fanmail invocation of a scenario.
type step struct {
	args    []string // after "fanmail --data-dir DIR"
	stdin   string
	stdout  *string // exact; nil = not checked
	stderr  *string // exact; nil = not checked
	wantErr string  // substring of the returned error; "" = must succeed
}

func out(s string) *string { return &s }

// run executes one fanmail command line against dataDir with captured
// standard streams.
func run(t *testing.T, dataDir, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter, app.Reader = &o, &e, strings.NewReader(stdin)
	err = runApp(app, append([]string{"fanmail", "--data-dir", dataDir}, args...))
	return o.String(), e.String(), err
}

// mustRun runs one fanmail command line against dataDir, which must
// succeed, and returns its standard output.
func mustRun(t *testing.T, dataDir string, args ...string) string {
	t.Helper()
	stdout, _, err := run(t, dataDir, "", args...)
	if err != nil {
		t.Fatalf("fanmail %s: %v", strings.Join(args, " "), err)
	}
	return stdout
}

// runSteps runs each step against dataDir, in which "$DATA" in an
// expected output or error stands for dataDir.
func runSteps(t *testing.T, dataDir string, steps []step) {
	t.Helper()
	data := func(p *string) *string {
		if p == nil {
			return nil
		}
		return out(strings.ReplaceAll(*p, "$DATA", dataDir))
	}
	for i, s := range steps {
		s.stdout, s.stderr, s.wantErr = data(s.stdout), data(s.stderr), *data(&s.wantErr)
		stdout, stderr, err := run(t, dataDir, s.stdin, s.args...)
		where := fmt.Sprintf("step %d (fanmail %s)", i+1, strings.Join(s.args, " "))
		switch {
		case s.wantErr == "" && err != nil:
			t.Fatalf("%s: %v", where, err)
		case s.wantErr != "" && err == nil:
			t.Fatalf("%s succeeded, want error containing %q", where, s.wantErr)
		case s.wantErr != "" && !strings.Contains(err.Error(), s.wantErr):
			t.Errorf("%s error:\n%v\nwant it to contain:\n%s", where, err, s.wantErr)
		}
		if s.stdout != nil {
			if diff := cmp.Diff(*s.stdout, stdout); diff != "" {
				t.Errorf("%s stdout (-want +got):\n%s", where, diff)
			}
		}
		if s.stderr != nil {
			if diff := cmp.Diff(*s.stderr, stderr); diff != "" {
				t.Errorf("%s stderr (-want +got):\n%s", where, diff)
			}
		}
	}
}

const list = "announce@lists.example.org"

var (
	goodFile = filepath.Join("..", "..", "testdata", "members", "good.txt")
	badFile  = filepath.Join("..", "..", "testdata", "members", "bad-lines.txt")
)

func TestListCommands(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"create, show, ls, delete", []step{
			{args: []string{"list", "ls"}, stdout: out(""),
				stderr: out("no lists yet in $DATA (create one with: fanmail list create LIST@DOMAIN)\n")},
			{args: []string{"list", "create", "Announce@Lists.Example.ORG", "--owner", "<Alice@Example.org>"},
				stdout: out("created list Announce@lists.example.org (bounces go to Announce-bounces@lists.example.org)\n")},
			{args: []string{"list", "create", "--owner", "bob@example.org", "news@example.org"},
				stdout: out("created list news@example.org (bounces go to news-bounces@example.org)\n")},
			{args: []string{"list", "create", list}, wantErr: "list announce@lists.example.org already exists (see it with: fanmail list show announce@lists.example.org)"},
			{args: []string{"member", "add", list, "bob@example.com", "carol@example.net"}},
			{args: []string{"list", "ls"}, stdout: out(
				"Announce@lists.example.org  2 members\n" +
					"news@example.org            0 members\n")},
			{args: []string{"list", "delete", "news@EXAMPLE.org"}, stdout: out("deleted list news@example.org and its 0 members\n")},
			{args: []string{"list", "delete", "news@example.org"},
				wantErr: "list news@example.org does not exist (create it with: fanmail list create news@example.org)"},
			{args: []string{"list", "ls"}, stdout: out("Announce@lists.example.org  2 members\n")},
		}},
		{"bad arguments", []step{
			{args: []string{"list", "create", "bob@@example.org"}, wantErr: `list create: list address "bob@@example.org": more than one @`},
			{args: []string{"list", "create", "x@example.org", "--owner", "alice"}, wantErr: `list create: --owner "alice": missing @`},
			{args: []string{"list", "create"}, wantErr: "list create: give exactly one LIST@DOMAIN"},
			{args: []string{"list", "create", "a@x.org", "b@x.org"}, wantErr: "list create: give exactly one LIST@DOMAIN"},
			{args: []string{"list", "show"}, wantErr: "list show: give exactly one LIST, e.g. fanmail list show announce@lists.example.org"},
			{args: []string{"list", "show", "nope@example.org"},
				wantErr: "no lists yet in $DATA (create one with: fanmail list create LIST@DOMAIN)"},
			{args: []string{"member", "ls", "nope@example.org"},
				wantErr: "no lists yet in $DATA (create one with: fanmail list create LIST@DOMAIN)"},
			{args: []string{"list", "ls", "extra"}, wantErr: "list ls: takes no arguments"},
		}},
	}
	for _, tt := range tests {
		// Not parallel: urfave/cli v2 keeps flags such as HelpFlag in
		// package variables that every App.Run writes.
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, t.TempDir(), tt.steps)
		})
	}
}

// columnGap is the space between two columns of a table.
var columnGap = regexp.MustCompile(" {2,}")

func TestListShow(t *testing.T) {
	dir := t.TempDir()
	runSteps(t, dir, []step{
		{args: []string{"list", "create", list, "--owner", "alice@example.org"}},
		{args: []string{"member", "add", list, "a@x.org", "b@y.org", "c@y.org"}},
	})
	stdout := mustRun(t, dir, "list", "show", "ANNOUNCE@lists.example.org")
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 23 || !strings.HasPrefix(lines[2], "created:    ") {
		t.Fatalf("list show printed:\n%s", stdout)
	}
	lines[2] = "created:    (time)"
	want := []string{
		"list:       announce@lists.example.org",
		"owner:      alice@example.org",
		"created:    (time)",
		"members:    3",
		"moderators: 0",
		"held posts: 0",
		"bounces:    announce-bounces@lists.example.org",
		"settings:",
		"  posting  members  (default)",
		"  nonmember_action  hold  (default)",
		"  hold_days  14  (default)",
		"  dmarc  munge  (default)",
		`  subject_prefix  ""  (default)`,
		`  footer  ""  (default)`,
		`  archive_url  ""  (default)`,
		"  personalize  off  (default)",
		"  subscribe_policy  confirm  (default)",
		"  confirm_expire  3d  (default)",
		"  max_autoresponses_per_day  10  (default)",
		"  bounce_score_threshold  5  (default)",
		"  bounce_info_stale_after  7d  (default)",
		"  bounce_you_are_disabled_warnings  3  (default)",
		"  bounce_you_are_disabled_warnings_interval  7d  (default)",
	}
	// The settings' columns are as wide as the longest key.
	for i := 8; i < len(lines); i++ {
		lines[i] = "  " + columnGap.ReplaceAllString(strings.TrimPrefix(lines[i], "  "), "  ")
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("list show (-want +got):\n%s", diff)
	}
}

func TestMemberCommands(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"add, rm, ls", []step{
			{args: []string{"list", "create", list}},
			{args: []string{"member", "add", list, "bob@example.com", "<Carol@EXAMPLE.net>", "bob@example.com"},
				stdout: out("added 2 members to announce@lists.example.org (0 already present, 1 duplicate in the input)\n"),
				stderr: out("")},
			{args: []string{"member", "add", "Announce@lists.example.org", "bob@example.com", "dave@example.org"},
				stdout: out("added 1 member to announce@lists.example.org (1 already present)\n")},
			{args: []string{"member", "ls", list}, stdout: out("bob@example.com\nCarol@example.net\ndave@example.org\n"), stderr: out("")},
			{args: []string{"member", "rm", list, "bob@EXAMPLE.com", "nobody@example.com"},
				stdout: out("removed 1 member from announce@lists.example.org (1 was not a member)\n")},
			{args: []string{"member", "ls", list}, stdout: out("Carol@example.net\ndave@example.org\n")},
		}},
		{"bad addresses on the command line apply nothing", []step{
			{args: []string{"list", "create", list}},
			{args: []string{"member", "add", list, "ok@example.com", "bob@@x", "also-ok@example.com", "no-at"},
				wantErr: "member add: 2 bad addresses, nothing applied:\n" +
					`argument 3 "bob@@x": more than one @ (quote the local part if it really contains @) (fix the address or leave it out)` + "\n" +
					`argument 5 "no-at": missing @ (fix the address or leave it out)`},
			{args: []string{"member", "ls", list}, stdout: out("")},
		}},
		{"import a file, with flags after the list", []step{
			{args: []string{"list", "create", list}},
			{args: []string{"member", "add", list, "--file", goodFile},
				stdout: out("added 5 members to announce@lists.example.org (0 already present, 1 duplicate in the input)\n"),
				stderr: out("")},
			{args: []string{"member", "ls", list}, stdout: out(
				`"john doe"@example.com` + "\n" +
					"bob@example.com\n" +
					"carol@example.net\n" +
					"erin@example.net\n" +
					"dave@example.org\n")},
			{args: []string{"member", "rm", "-f", goodFile, list},
				stdout: out("removed 5 members from announce@lists.example.org (0 were not members, 1 duplicate in the input)\n")},
		}},
		{"import with bad lines applies nothing", []step{
			{args: []string{"list", "create", list}},
			{args: []string{"member", "add", list, "first@example.com", "--file=" + badFile},
				wantErr: "member add: 4 bad addresses, nothing applied:\n" +
					badFile + `:2: "bob@@example.com": more than one @ (quote the local part if it really contains @) (fix the address or remove the line)` + "\n" +
					badFile + `:4: "no-at-sign": missing @ (fix the address or remove the line)` + "\n" +
					badFile + `:6: "Bob Smith <bob@example.com>": text before < (give only the address inside <>) (fix the address or remove the line)` + "\n" +
					badFile + `:7: ".dot@example.com": local part starts with a dot (fix the address or remove the line)`},
			{args: []string{"member", "ls", list}, stdout: out("")},
			{args: []string{"member", "add", list, "--file", "no-such-file.txt"}, wantErr: "member add: open no-such-file.txt: no such file or directory"},
		}},
		{"stdin", []step{
			{args: []string{"list", "create", list}},
			{args: []string{"member", "add", list, "--file", "-"}, stdin: "a@x.org\r\n# c\nb@y.org\n",
				stdout: out("added 2 members to announce@lists.example.org (0 already present)\n")},
			{args: []string{"member", "add", list, "-f", "-"}, stdin: "c@x.org\nc@@x.org\n",
				wantErr: `<stdin>:2: "c@@x.org": more than one @`},
			{args: []string{"member", "rm", list, "--file", "-"}, stdin: "a@x.org\n",
				stdout: out("removed 1 member from announce@lists.example.org (0 were not members)\n")},
			{args: []string{"member", "ls", list}, stdout: out("b@y.org\n")},
		}},
		{"list does not exist", []step{
			{args: []string{"member", "add", "nope@example.org", "a@x.org"},
				wantErr: "list nope@example.org does not exist (create it with: fanmail list create nope@example.org)"},
			{args: []string{"member", "rm", "nope@example.org", "a@x.org"},
				wantErr: "list nope@example.org does not exist (create it with: fanmail list create nope@example.org)"},
			{args: []string{"member", "ls", "nope@example.org"}, stdout: out(""),
				wantErr: "list nope@example.org does not exist (create it with: fanmail list create nope@example.org)"},
		}},
		{"usage errors", []step{
			{args: []string{"member", "add"}, wantErr: "member add: give a LIST and addresses or --file FILE"},
			{args: []string{"member", "add", list}, wantErr: "member add: give a LIST and addresses or --file FILE"},
			{args: []string{"member", "rm", list, "--file"}, wantErr: "member rm: option --file needs a value"},
			{args: []string{"member", "add", list, "--bogus", "x"}, wantErr: `member add: unknown option --bogus (put "--" before an argument that starts with -`},
			{args: []string{"member", "ls"}, wantErr: "member ls: give exactly one LIST"},
		}},
		{"address starting with a dash after --", []step{
			{args: []string{"list", "create", list}},
			{args: []string{"member", "add", list, "--", "-dash@example.com"},
				stdout: out("added 1 member to announce@lists.example.org (0 already present)\n")},
			{args: []string{"member", "ls", list}, stdout: out("-dash@example.com\n")},
		}},
	}
	for _, tt := range tests {
		// Not parallel: urfave/cli v2 keeps flags such as HelpFlag in
		// package variables that every App.Run writes.
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, t.TempDir(), tt.steps)
		})
	}
}

// TestMemberImportLarge imports 100,000 members through the CLI and
// checks that it is quick and prints no progress when stdout is not a
// terminal.
func TestMemberImportLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large import skipped in -short mode")
	}
	dir := t.TempDir()
	var b strings.Builder
	for i := range 100_000 {
		fmt.Fprintf(&b, "user%06d@domain%03d.example\n", i, i%500)
	}
	file := filepath.Join(dir, "members.txt")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	runSteps(t, filepath.Join(dir, "data"), []step{
		{args: []string{"list", "create", list}},
		{args: []string{"member", "add", list, "--file", file},
			stdout: out("added 100000 members to announce@lists.example.org (0 already present)\n"),
			stderr: out("")},
		{args: []string{"list", "ls"}, stdout: out("announce@lists.example.org  100000 members\n")},
	})
}

// TestOpenStoreCreatesDataDir checks that a fresh --data-dir is created
// with restrictive permissions.
func TestOpenStoreCreatesDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	runSteps(t, dir, []step{{args: []string{"list", "create", list}}})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o750 != 0 {
		t.Errorf("data dir mode %v, want at most 0750", perm)
	}
	if _, err := os.Stat(filepath.Join(dir, "lists.db")); err != nil {
		t.Errorf("lists.db not created: %v", err)
	}
}
