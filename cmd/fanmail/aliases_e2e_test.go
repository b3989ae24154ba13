package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
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
	progDir, err := os.MkdirTemp("", "fanmail-prog")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(progDir) })
	if err := os.Chmod(progDir, 0o777); err != nil {
		t.Fatal(err)
	}
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
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.log.String(), "relay=local status=sent") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
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
	accepts := func(rcpt string) bool {
		c, err := smtp.Dial(p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("poster@example.org", nil); err != nil {
			t.Fatal(err)
		}
		err = c.Rcpt(rcpt, nil)
		var se *smtp.SMTPError
		if err != nil && !(errors.As(err, &se) && se.Code == 550) {
			t.Fatalf("RCPT %s: %v", rcpt, err)
		}
		return err == nil
	}
	waitAccepts := func(rcpt string, want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for accepts(rcpt) != want {
			if time.Now().After(deadline) {
				t.Fatalf("RCPT %s accepted=%v after 10s, want %v\n%s", rcpt, !want, want, p.log.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if accepts("late@fanmail.test") || !accepts("nested@fanmail.test") || accepts("nested@elsewhere.test") {
		t.Fatal("the initial table is not what the file says")
	}

	orig, _ := os.ReadFile(w.file)
	writeFile(t, filepath.Dir(w.file), filepath.Base(w.file), string(orig)+"late: late@d00.test\n")
	waitAccepts("late@fanmail.test", true) // noticed by the file watch

	// A broken edit: the old table, "late" included, stays in use.
	writeFile(t, filepath.Dir(w.file), filepath.Base(w.file), string(orig)+"late: late@d00.test\nbroken line without a colon\n")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log.String(), "aliases reload failed") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.log.String(), w.file+":7:") {
		t.Errorf("the failed reload did not log FILE:LINE:\n%s", p.log.String())
	}
	if !accepts("late@fanmail.test") || !accepts("everyone@fanmail.test") {
		t.Errorf("a failed reload dropped the previous table")
	}

	// SIGHUP reloads at once, as newaliases does for sendmail.
	writeFile(t, filepath.Dir(w.file), filepath.Base(w.file), string(orig))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitAccepts("late@fanmail.test", false)
	p.stop(t)
}
