package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var goldenAliases = filepath.Join("..", "..", "testdata", "aliases")

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAliasesCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good", "postmaster: root\nlist: a@x.org,\n  b@y.org\n")
	dup := writeFile(t, dir, "dup", "x: a@x.org\nX: b@x.org\n")
	bad := filepath.Join(goldenAliases, "13-errors.in")
	runSteps(t, dir, []step{
		{args: []string{"aliases", "check", good}, stdout: out(good + ": 2 aliases, 0 errors, 0 warnings\n")},
		{args: []string{"aliases", "check", dup}, stdout: out(dup + ":2: warning: duplicate alias name x (also at " + dup + ":1): this later definition wins; merge them into one entry\n" +
			dup + ": 1 alias, 0 errors, 1 warning\n")},
		{args: []string{"aliases", "check", bad}, wantErr: "4 errors", stdout: out(
			bad + ":3: error: non-continuation line starts with space (a comment or the start of the file ends an entry: remove the leading blanks or move the line up)\n" +
				bad + ":5: error: missing colon (write NAME: VALUE, ...)\n" +
				bad + ":6: error: missing value for alias empty (write at least one target after the colon)\n" +
				bad + ":7: error: bad address \"bad@@remote.example\": more than one @ (quote the local part if it really contains @)\n" +
				bad + ": 2 aliases, 4 errors, 0 warnings\n")},
		{args: []string{"aliases", "check", filepath.Join(dir, "missing")}, wantErr: "1 error"},
		{args: []string{"aliases", "check"}, wantErr: "give one or more"},
	})
}

// TestAliasesExpandGolden runs the command on every golden case: its
// target lines must be those of NN-name.want, which the aliases package
// test checks against sendmail -bv.
func TestAliasesExpandGolden(t *testing.T) {
	ins, _ := filepath.Glob(filepath.Join(goldenAliases, "[0-9][0-9]-*.in"))
	for _, in := range ins {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, _ := os.ReadFile(in)
			first, _, _ := strings.Cut(string(data), "\n")
			addrs := strings.Fields(strings.TrimPrefix(strings.TrimSpace(first), "# expand:"))
			want, _ := os.ReadFile(strings.TrimSuffix(in, ".in") + ".want")
			var wantLines []string
			for _, l := range strings.Split(strings.TrimSuffix(string(want), "\n"), "\n") {
				if !strings.HasPrefix(l, "../") {
					wantLines = append(wantLines, l)
				}
			}
			args := []string{"aliases", "expand", "--aliases", in, "--local-domain", "example.org", "--local-domain", "localhost"}
			if strings.Contains(string(data), "\n# options: merge") {
				args = append(args, "--merge")
			}
			args = append(args, addrs...)
			stdout, _, _ := run(t, t.TempDir(), "", args...)
			var got []string
			for _, l := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
				if !strings.HasPrefix(l, "ERROR: "+goldenAliases) { // load errors: the golden file prints them as FILE:LINE: error:
					got = append(got, l)
				}
			}
			if diff := cmp.Diff(wantLines, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAliasesExpand(t *testing.T) {
	dir := t.TempDir()
	include := writeFile(t, dir, "staff.list", "a@x.org\n|/bin/cat\n")
	al := writeFile(t, dir, "aliases", "staff: :include:"+include+", boss@x.org\n"+
		"owner-staff: staff-request\nstaff-request: keeper@x.org\n"+
		"announce: news@lists.example.org, \\root\n"+
		"archive: /var/mail/archive, \"|/usr/bin/archiver list\"\n")
	base := []string{"aliases", "expand", "--aliases", al, "--local-domain", "example.org", "--local-domain", "lists.example.org"}
	runSteps(t, dir, []step{
		{args: append(base, "staff"), wantErr: "1 error", stdout: out("a@x.org\nboss@x.org\n" +
			"ERROR: " + include + ":2: |/bin/cat: programs in :include: files are refused (list them in the aliases file, or enable them for includes in the config)\n")},
		{args: append(base, "--allow-include-exec", "staff"), stdout: out("a@x.org\n|/bin/cat\nboss@x.org\n")},
		{args: append(base, "archive", "Archive@Example.ORG"), stdout: out("/var/mail/archive\n|/usr/bin/archiver list\n")},
		{args: append(base, "/etc/passwd", ":include:"+include), wantErr: "2 errors", stdout: out(
			"ERROR: /etc/passwd: cannot mail directly to files\n" +
				"ERROR: :include:" + include + ": cannot mail directly to :include:s\n")},
		// A list of the store, reached through an alias: its members, with
		// the list's owner as envelope sender.
		{args: []string{"list", "create", "news@lists.example.org"}},
		{args: []string{"member", "add", "news@lists.example.org", "m1@y.org", "m2@y.org", "a@x.org"}},
		{args: append(base, "--explain", "announce", "staff"), wantErr: "1 error", stdout: out(`a@x.org
m1@y.org
m2@y.org
root@example.org
boss@x.org
ERROR: ` + include + `:2: |/bin/cat: programs in :include: files are refused (list them in the aliases file, or enable them for includes in the config)

expansion:
  announce  (alias at ` + al + `:4)
    news@lists.example.org  (list, 3 members)  [envelope sender owner-news@lists.example.org]
      a@x.org  (deliver)
      m1@y.org  (deliver)
      m2@y.org  (deliver)
    \root  (deliver)
  staff  (alias at ` + al + `:1)  [envelope sender staff-request@example.org]
    :include:` + include + `  (include, 2 targets)
      a@x.org  (duplicate suppressed)
      |/bin/cat  (error: programs in :include: files are refused (list them in the aliases file, or enable them for includes in the config))
    boss@x.org  (deliver)

envelopes:
  sender owner-news@lists.example.org, queue group default (r=100), domain x.org, envelope 1: 1 recipient: a@x.org
  sender owner-news@lists.example.org, queue group default (r=100), domain y.org, envelope 1: 2 recipients: m1@y.org, m2@y.org
  sender <the post's sender>, queue group default (r=100), domain example.org, envelope 1: 1 recipient: root@example.org
  sender staff-request@example.org, queue group default (r=100), domain x.org, envelope 1: 1 recipient: boss@x.org
`)},
	})
}

func TestServeRefusesProgramsAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the refusal is for a server running as root")
	}
	dir := t.TempDir()
	al := writeFile(t, dir, "aliases", "x: |/bin/true\n")
	cfg := writeFile(t, dir, "fanmail.toml", "hostname = \"mail.example.org\"\n[aliases]\nfiles = [\""+al+"\"]\n")
	_, _, err := run(t, dir, "", "--config", cfg, "serve", "--listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "refusing to run |program targets as root") {
		t.Errorf("serve as root without program_user: %v", err)
	}
}
