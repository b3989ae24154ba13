package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/testutil"
)

// aliasWorld is a server with an aliases file: a nested alias, a list,
// an :include: file and a |program, run as nobody like a root server's
// programs must be.
type aliasWorld struct {
	n       *fakeNet
	cfg     string
	file    string // the aliases file
	progOut string // where the |program appends what it gets
	members []string
}

func newAliasWorld(t *testing.T) *aliasWorld {
	t.Helper()
	domains := testDomains(2)
	w := &aliasWorld{n: newFakeNet(t, domains, nil)}
	dir := t.TempDir()
	// The program runs as nobody: it needs a directory it may write.
	progDir := testutil.OpenTempDir(t, "fanmail-prog", 0o777)
	w.progOut = filepath.Join(progDir, "prog.out")
	include := filepath.Join(dir, "staff.list")
	writeFile(t, filepath.Dir(include), filepath.Base(include), "# staff\ni1@d00.test, i2@d01.test\nmember0000@d00.test\n")
	w.file = filepath.Join(dir, "aliases")
	writeFile(t, filepath.Dir(w.file), filepath.Base(w.file), fmt.Sprintf(`# fanmail test aliases
everyone: nested, %s,
	:include:%s,
	"|cat >> %s"
nested: n1@d00.test, N2@D01.TEST, member0001@d01.test
`, e2eList, include, w.progOut))
	// As root, programs must run as someone else; otherwise they run as
	// the server's own user.
	runAs := ""
	if os.Geteuid() == 0 {
		runAs = `program_user = "nobody"`
	}
	w.cfg = w.n.writeConfig(t, filepath.Join(dir, "data"), fmt.Sprintf(`
[aliases]
files = [%q]
local_domains = ["fanmail.test"]
%s
program_timeout = "10s"
`, w.file, runAs))
	w.members = makeList(t, w.cfg, e2eList, domains, []int{3, 3})
	return w
}

// TestAliasExpansionEndToEnd posts to an alias whose expansion holds a
// nested alias, a list, an :include: file and a |program, overlapping
// on purpose: every final target gets the post exactly once.
func TestAliasExpansionEndToEnd(t *testing.T) {
	t.Parallel()
	w := newAliasWorld(t)
	p := startFanmail(t, w.cfg)
	postTo(t, p.addr, "poster@example.org", "Everyone@fanmail.test", e2ePost)

	want := append([]string{"n1@d00.test", "N2@d01.test", "i1@d00.test", "i2@d01.test"}, w.members...)
	w.n.waitDelivered(t, len(want), 30*time.Second, p)
	p.logged("relay=local status=sent", 1, 20*time.Second)
	time.Sleep(300 * time.Millisecond)
	got := w.n.wantEachOnce(t, want)
	if len(got) != len(want) {
		t.Errorf("sinks saw %d recipients %v, want %d", len(got), got, len(want))
	}
	out, err := os.ReadFile(w.progOut)
	if err != nil {
		t.Fatalf("the |program did not run: %v\n%s", err, p.log.String())
	}
	if n := strings.Count(string(out), "Message-ID: <e2e-1@example.org>"); n != 1 {
		t.Errorf("the |program got the post %d times, want 1:\n%s", n, out)
	}
	p.stop(t)
}

// TestAliasReload: an edit to the aliases file is picked up while the
// server runs (file watch and SIGHUP), and an edit with an error keeps
// the previous table, logging FILE:LINE.
func TestAliasReload(t *testing.T) {
	t.Parallel()
	w := newAliasWorld(t)
	p := startFanmail(t, w.cfg)
	accepts := func(rcpt string) bool { return rcptAccepted(t, p.addr, rcpt) }
	waitAccepts := func(rcpt string, want bool) {
		t.Helper()
		if !testutil.Poll(10*time.Second, 50*time.Millisecond, func() bool { return accepts(rcpt) == want }) {
			t.Fatalf("RCPT %s accepted=%v after 10s, want %v\n%s", rcpt, !want, want, p.log.String())
		}
	}
	if accepts("late@fanmail.test") || !accepts("nested@fanmail.test") || accepts("nested@elsewhere.test") {
		t.Fatal("the initial table is not what the file says")
	}

	orig, _ := os.ReadFile(w.file)
	writeFile(t, filepath.Dir(w.file), filepath.Base(w.file), string(orig)+"late: late@d00.test\n")
	waitAccepts("late@fanmail.test", true) // noticed by the file watch

	// An edit with a bad line: the line is logged with FILE:LINE, and
	// every other alias, the new one included, is served.
	writeFile(t, filepath.Dir(w.file), filepath.Base(w.file), string(orig)+"broken line without a colon\nlater: later@d00.test\n")
	waitAccepts("later@fanmail.test", true)
	if !waitLog(p, w.file+":6: missing colon") {
		t.Errorf("the reload did not log the bad line's FILE:LINE:\n%s", p.log.String())
	}
	if accepts("late@fanmail.test") || !accepts("everyone@fanmail.test") {
		t.Errorf("the reloaded table is not what the file says")
	}

	// A file that cannot be read at all: the previous table stays.
	if err := os.Rename(w.file, w.file+".away"); err != nil {
		t.Fatal(err)
	}
	waitLog(p, "aliases reload failed")
	if !accepts("later@fanmail.test") || !accepts("everyone@fanmail.test") {
		t.Errorf("a reload that could not read the file dropped the previous table\n%s", p.log.String())
	}

	// SIGHUP reloads at once, as newaliases does for sendmail.
	os.Remove(w.file + ".away")
	writeFile(t, filepath.Dir(w.file), filepath.Base(w.file), string(orig))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitAccepts("later@fanmail.test", false)
	p.stop(t)
}

// rcptAccepted reports whether the server at addr takes RCPT TO:<rcpt>
// (a 550 is a refusal; anything else is a failure).
func rcptAccepted(t *testing.T, addr, rcpt string) bool {
	t.Helper()
	c := mailFrom(t, addr, "client.test", "poster@example.org")
	defer c.Close()
	err := c.Rcpt(rcpt, nil)
	var se *smtp.SMTPError
	if err != nil && !(errors.As(err, &se) && se.Code == 550) {
		t.Fatalf("RCPT %s: %v", rcpt, err)
	}
	return err == nil
}

// TestAliasBadLineServesTheRest: a server started with an aliases file
// that has a bad line logs that line with FILE:LINE and serves every
// other alias, at every address of class w and with +detail; `aliases
// check` lists the line and exits 1.
func TestAliasBadLineServesTheRest(t *testing.T) {
	t.Parallel()
	domains := testDomains(1)
	n := newFakeNet(t, domains, nil)
	dir := t.TempDir()
	file := writeFile(t, dir, "aliases", "# migrated from sendmail\n"+
		"first: f1@d00.test\n"+
		"team: alice bob carol@d00.test\n"+
		"last: \"Last L\" <l1@d00.test>\n")
	// Host name fanmail.test: class w is lists.test, fanmail.test, localhost.
	runAs := "" // as root, programs must run as someone else
	if os.Geteuid() == 0 {
		runAs = `program_user = "nobody"`
	}
	cfg := n.writeConfig(t, filepath.Join(dir, "data"), fmt.Sprintf("[aliases]\nfiles = [%q]\nlocal_domains = [\"lists.test\"]\n%s\n", file, runAs))
	p := startFanmail(t, cfg)
	if !waitLog(p, file+`:3: \"alice bob carol@d00.test\": blanks inside an address`) {
		t.Errorf("the bad line is not logged with FILE:LINE:\n%s", p.log.String())
	}
	for rcpt, want := range map[string]bool{
		"first@lists.test":       true,
		"Last@FANMAIL.TEST":      true,
		"last@localhost":         true,
		"first+tag@lists.test":   true,
		"team@lists.test":        false,
		"first@other.lists.test": false,
	} {
		if got := rcptAccepted(t, p.addr, rcpt); got != want {
			t.Errorf("RCPT %s accepted=%v, want %v", rcpt, got, want)
		}
	}
	postTo(t, p.addr, "poster@example.org", "last+news@lists.test", e2ePost)
	n.waitDelivered(t, 1, 30*time.Second, p)
	n.wantEachOnce(t, []string{"l1@d00.test"})
	p.stop(t)

	cmd := exec.Command(fanmailBinary(t), "--config", cfg, "aliases", "check", file)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("aliases check: %v, want exit status 1", err)
	}
	if want := file + ": 2 aliases, 1 error, 0 warnings\n"; stdout.String() != want {
		t.Errorf("aliases check stdout %q, want %q", stdout.String(), want)
	}
	if want := "ERROR: " + file + `:3: "alice bob carol@d00.test": blanks inside an address (sendmail would read "alice.bob.carol@d00.test"): separate addresses with commas, or quote a name that has blanks` + "\n"; stderr.String() != want {
		t.Errorf("aliases check stderr %q, want %q", stderr.String(), want)
	}
}
