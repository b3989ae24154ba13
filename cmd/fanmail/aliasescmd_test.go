package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"
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

// runAliases runs fanmail in-process like run, but lets the exit status
// of a command that found errors come back as an error instead of
// ending the test binary.
func runAliases(t *testing.T, dataDir string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &o, &e
	app.ExitErrHandler = func(*cli.Context, error) {}
	err = runApp(app, append([]string{"fanmail", "--data-dir", dataDir}, args...))
	return o.String(), e.String(), err
}

// aliasStep is one command and what it must print; fail says it must
// exit 1 (and, stderr not being a terminal, print no summary).
type aliasStep struct {
	args           []string
	fail           bool
	wantErr        string // an error returned for bad usage
	stdout, stderr string
}

func runAliasSteps(t *testing.T, dataDir string, steps []aliasStep) {
	t.Helper()
	for i, s := range steps {
		stdout, stderr, err := runAliases(t, dataDir, s.args...)
		where := fmt.Sprintf("step %d (fanmail %s)", i+1, strings.Join(s.args, " "))
		var exit cli.ExitCoder
		switch {
		case s.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Errorf("%s: error %v, want one containing %q", where, err, s.wantErr)
			}
			continue
		case s.fail && !(errors.As(err, &exit) && exit.ExitCode() == 1 && err.Error() == ""):
			t.Errorf("%s: %v, want a silent exit status 1", where, err)
		case !s.fail && err != nil:
			t.Errorf("%s: %v", where, err)
		}
		if diff := cmp.Diff(s.stdout, stdout); diff != "" {
			t.Errorf("%s stdout (-want +got):\n%s", where, diff)
		}
		if diff := cmp.Diff(s.stderr, stderr); diff != "" {
			t.Errorf("%s stderr (-want +got):\n%s", where, diff)
		}
	}
}

func TestAliasesCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good", "postmaster: root\nlist: a@x.org,\n  b@y.org\n")
	dup := writeFile(t, dir, "dup", "x: a@x.org\nX: b@x.org\n")
	bad := filepath.Join(goldenAliases, "13-errors.in")
	runAliasSteps(t, dir, []aliasStep{
		{args: []string{"aliases", "check", good}, stdout: good + ": 2 aliases, 0 errors, 0 warnings\n"},
		{args: []string{"aliases", "check", dup, "--merge"}, stdout: dup + ": 1 alias, 0 errors, 1 warning\n",
			stderr: "WARNING: " + dup + ":2: duplicate alias name x (first at " + dup + ":1): values merged\n"},
		{args: []string{"aliases", "check", bad}, fail: true, stdout: bad + ": 2 aliases, 4 errors, 0 warnings\n", stderr: "" +
			"ERROR: " + bad + ":3: line starts with a blank but continues no entry (a blank line or the start of the file ends an entry): remove the leading blanks, or the blank line above it\n" +
			"ERROR: " + bad + ":5: missing colon (write NAME: VALUE, ...)\n" +
			"ERROR: " + bad + ":6: missing value for alias empty (write at least one target after the colon)\n" +
			"ERROR: " + bad + ":7: bad address \"bad@@remote.example\": more than one @ (quote the local part if it really contains @)\n"},
		{args: []string{"aliases", "check", filepath.Join(dir, "missing")}, fail: true, stdout: filepath.Join(dir, "missing") + ": 0 aliases, 1 error, 0 warnings\n",
			stderr: "ERROR: " + filepath.Join(dir, "missing") + ": cannot open: stat " + filepath.Join(dir, "missing") + ": no such file or directory\n"},
		{args: []string{"aliases", "check"}, wantErr: "give one or more"},
		{args: []string{"aliases", "check", good, "--explain"}, wantErr: "unknown option --explain"},
	})
}

// goldenConfig is a config whose host name is the one the golden cases'
// sendmail ran with, so class w is the same.
func goldenConfig(t *testing.T, dir string) string {
	return writeFile(t, dir, "fanmail.toml", "hostname = \"mail.example.org\"\n")
}

// TestAliasesExpandGolden runs the command on every golden case: its
// stdout must be NN-name.want and its stderr NN-name.err, which the
// aliases package test checks against sendmail -bv.
func TestAliasesExpandGolden(t *testing.T) {
	ins, _ := filepath.Glob(filepath.Join(goldenAliases, "[0-9][0-9]-*.in"))
	if len(ins) == 0 {
		t.Fatal("no golden cases")
	}
	dir := t.TempDir()
	cfg := goldenConfig(t, dir)
	for _, in := range ins {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, _ := os.ReadFile(in)
			first, _, _ := strings.Cut(string(data), "\n")
			addrs := strings.Fields(strings.TrimPrefix(strings.TrimSpace(first), "# expand:"))
			base := strings.TrimSuffix(in, ".in")
			want, _ := os.ReadFile(base + ".want")
			wantErr, _ := os.ReadFile(base + ".err")
			// Options after the addresses, as people type them.
			args := append([]string{"--config", cfg, "aliases", "expand"}, addrs...)
			args = append(args, "--aliases", in, "--local-domain", "example.org")
			if strings.Contains(string(data), "\n# options: merge") {
				args = append(args, "--merge")
			}
			stdout, stderr, err := runAliases(t, dir, args...)
			if (err != nil) != (len(wantErr) > 0 && strings.Contains(string(wantErr), "ERROR: ")) {
				t.Errorf("exit error %v with stderr:\n%s", err, stderr)
			}
			if diff := cmp.Diff(string(want), stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			stderr = strings.ReplaceAll(stderr, goldenAliases+"/", "")
			if diff := cmp.Diff(string(wantErr), stderr); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
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
	cfg := goldenConfig(t, dir)
	base := []string{"--config", cfg, "aliases", "expand", "--aliases", al, "--local-domain", "example.org", "--local-domain", "lists.example.org"}
	refused := "ERROR: " + include + ":2: |/bin/cat: programs in :include: files are refused (list them in the aliases file, or enable them for includes in the config)\n"
	runAliasSteps(t, dir, []aliasStep{
		{args: append(base, "staff"), fail: true, stdout: "a@x.org\nboss@x.org\n", stderr: refused},
		{args: append(base, "--allow-include-exec", "staff"), stdout: "a@x.org\n|/bin/cat\nboss@x.org\n"},
		{args: append(base, "staff", "--allow-include-exec=true"), stdout: "a@x.org\n|/bin/cat\nboss@x.org\n"},
		{args: append(base, "archive", "Archive@Example.ORG", "Nobody@MAIL.example.org", "Root@LocalHost"), stdout: "/var/mail/archive\n|/usr/bin/archiver list\nnobody\nroot\n"},
		{args: append(base, "/etc/passwd", ":include:"+include), fail: true, stderr: "ERROR: /etc/passwd: cannot mail directly to files\n" +
			"ERROR: :include:" + include + ": cannot mail directly to :include:s\n"},
		// After "--", a name that looks like an option is a name.
		{args: append(base, "staff", "--", "--explain"), fail: true, stdout: "a@x.org\nboss@x.org\n--explain\n", stderr: refused},
		{args: append(base, "staff", "--bogus"), wantErr: "unknown option --bogus"},
		{args: append(base, "staff", "--aliases"), wantErr: "option --aliases needs a value"},
		// A list of the store, reached through an alias: its members, with
		// the list's owner as envelope sender.
		{args: []string{"list", "create", "news@lists.example.org"}, stdout: "created list news@lists.example.org (bounces go to news-bounces@lists.example.org)\n"},
		{args: []string{"member", "add", "news@lists.example.org", "m1@y.org", "m2@y.org", "a@x.org"}, stdout: "added 3 members to news@lists.example.org (0 already present)\n"},
		{args: append(base, "announce", "staff", "--explain"), fail: true, stderr: refused, stdout: `a@x.org
m1@y.org
m2@y.org
root
boss@x.org

expansion:
  announce  (alias at ` + al + `:4)
    news@lists.example.org  (list, 3 members)  [envelope sender news-bounces@lists.example.org]
      a@x.org  (deliver)
      m1@y.org  (deliver)
      m2@y.org  (deliver)
    \root  (local mailbox; deliver)
  staff  (alias at ` + al + `:1)  [envelope sender staff-request@example.org]
    :include:` + include + `  (include, 2 targets)
      a@x.org  (duplicate suppressed)
      |/bin/cat  (error: programs in :include: files are refused (list them in the aliases file, or enable them for includes in the config))
    boss@x.org  (deliver)

envelopes:
  sender news-bounces@lists.example.org, queue group default (r=100), domain x.org, envelope 1: 1 recipient: a@x.org
  sender news-bounces@lists.example.org, queue group default (r=100), domain y.org, envelope 1: 2 recipients: m1@y.org, m2@y.org
  sender MAILER-DAEMON@mail.example.org, queue group default (r=100), domain example.org, envelope 1: 1 recipient: root@example.org
  sender staff-request@example.org, queue group default (r=100), domain x.org, envelope 1: 1 recipient: boss@x.org
`},
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

// TestAliasesSummaryOnTerminal: with stderr a terminal, a command that
// found errors also says how many (main prints it as "fanmail: ...").
func TestAliasesSummaryOnTerminal(t *testing.T) {
	tty, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer tty.Close()
	if !isatty.IsTerminal(tty.Fd()) {
		t.Skip("/dev/ptmx is not a terminal here")
	}
	dir := t.TempDir()
	al := writeFile(t, dir, "aliases", "a: b\nb: a\n")
	app := newApp()
	var o bytes.Buffer
	app.Writer, app.ErrWriter = &o, tty
	err = runApp(app, []string{"fanmail", "--data-dir", dir, "--config", goldenConfig(t, dir), "aliases", "expand", "a", "--aliases", al})
	if err == nil || err.Error() != "aliases expand: 1 error (see the ERROR lines)" {
		t.Errorf("error %v, want the summary", err)
	}
}
