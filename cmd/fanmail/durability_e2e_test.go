package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
)

// TestFlippedByteIsQuarantined: three posts are acknowledged and queued;
// with the server stopped one byte of the first one's journal record is
// flipped. After a restart the other two are delivered, the bad bytes
// are in a quarantine file beside the journal, and the log names the
// first post's queue ID.
func TestFlippedByteIsQuarantined(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, testDomains(1), nil)
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := n.writeConfig(t, dataDir, "[queue]\ndelivery_mode = \"queue\"\ninterval = \"1h\"\n")
	p := serveList(t, cfg, "solo@d00.test")
	var qids []string
	for i := range 3 {
		post := strings.Replace(e2ePost, "e2e-1@", fmt.Sprintf("flip-%d@", i), 1)
		post = strings.Replace(post, "First line of the post.", fmt.Sprintf("Post number %d of three.", i), 1)
		qids = append(qids, postTo(t, p.addr, "poster@example.org", e2eList, post))
	}
	p.stop(t)
	if n.delivered() != 0 {
		t.Fatalf("queue-only posts were delivered before the restart")
	}

	segs, _ := filepath.Glob(filepath.Join(dataDir, "queue", "*.journal"))
	var flipped string
	for _, seg := range segs {
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(data, []byte("Post number 0 of three.")); i >= 0 {
			data[i+5] ^= 0x01
			if err := os.WriteFile(seg, data, 0o640); err != nil {
				t.Fatal(err)
			}
			flipped = seg
		}
	}
	if flipped == "" {
		t.Fatalf("the first post is in no journal segment of %v", segs)
	}

	p = startFanmail(t, cfg)
	n.waitDelivered(t, 2, 30*time.Second, p)
	time.Sleep(300 * time.Millisecond)
	sink := n.sinks["d00.test"]
	for i := range 3 {
		want := 1
		if i == 0 {
			want = 0
		}
		if got := sink.PairCount(fmt.Sprintf("<flip-%d@example.org>", i), "solo@d00.test"); got != want {
			t.Errorf("post %d delivered %d times, want %d", i, got, want)
		}
	}
	quarantined, _ := filepath.Glob(flipped + ".*.quarantine")
	if len(quarantined) != 1 {
		t.Fatalf("quarantine files %v, want one beside %s", quarantined, flipped)
	}
	if bad, _ := os.ReadFile(quarantined[0]); !bytes.Contains(bad, []byte("umber 0 of three.")) {
		t.Errorf("the quarantine file does not hold the damaged record")
	}
	log := p.log.String()
	if !strings.Contains(log, "unreadable bytes skipped") || !strings.Contains(log, qids[0]) {
		t.Errorf("the log does not report the damage with queue ID %s", qids[0])
	}
	p.stop(t)
}

// oneDomain starts a fake network with the one domain d00.test and
// writes a config for it, with extra text conf, whose data directory is
// new.
func oneDomain(t *testing.T, conf string) (*fakeNet, string) {
	t.Helper()
	n := newFakeNet(t, testDomains(1), nil)
	return n, n.newConfig(t, conf)
}

// victimLists writes a config with extra text conf and makes two lists:
// e2eList, delivering to ok@d00.test, and list, whose one member is
// victim, at a domain a test hook makes delivery fail on.
func victimLists(t *testing.T, conf, list, victim string) (*fakeNet, string) {
	t.Helper()
	n, cfg := oneDomain(t, conf)
	openListWith(t, cfg, e2eList, "ok@d00.test")
	openListWith(t, cfg, list, victim)
	return n, cfg
}

// TestPoisonMessageIsMovedAside: a post whose delivery panics (through
// the test build's hook) is tried three times, then moved aside, while
// other posts are delivered; the queue tools say so, flush does not
// retry it, a restart keeps it aside, and delete removes it.
func TestPoisonMessageIsMovedAside(t *testing.T) {
	t.Parallel()
	n, cfg := victimLists(t, "[queue]\nretry_min = \"200ms\"\nretry_max = \"200ms\"\n", "poison@lists.example.org", "victim@poison.test")
	env := []string{"FANMAIL_TEST_PANIC_DOMAIN=poison.test"}
	p := startFanmail(t, cfg, env...)
	bad := postTo(t, p.addr, "poster@example.org", "poison@lists.example.org", e2ePost)
	for i := range 5 {
		postTo(t, p.addr, "poster@example.org", e2eList, strings.Replace(e2ePost, "e2e-1@", fmt.Sprintf("flow-%d@", i), 1))
	}
	n.waitDelivered(t, 5, 30*time.Second, p)
	mustLog(t, p, "message moved aside", 30*time.Second)
	time.Sleep(500 * time.Millisecond) // a fourth attempt would have come by now
	if got := strings.Count(p.log.String(), `msg="delivery panicked`); got != 3 {
		t.Errorf("delivery panicked %d times, want 3 (move_aside_after)", got)
	}
	for _, want := range []string{"qid=" + bad, "test hook: delivery to poison.test panics", "stack="} {
		if !strings.Contains(p.log.String(), want) {
			t.Errorf("the panic's log line lacks %q", want)
		}
	}
	if out := fanmailCLI(t, cfg, "", "queue"); !strings.Contains(out, bad) || !strings.Contains(out, "MOVED ASIDE") || !strings.Contains(out, "1 moved aside") {
		t.Errorf("fanmail queue does not show the message moved aside:\n%s", out)
	}
	if out := fanmailCLI(t, cfg, "", "queue", "show", bad); !strings.Contains(out, "MOVED ASIDE in group default") || !strings.Contains(out, "3 in a row panicked") {
		t.Errorf("fanmail queue show:\n%s", out)
	}
	fanmailCLI(t, cfg, "", "queue", "flush")
	time.Sleep(500 * time.Millisecond)
	if got := strings.Count(p.log.String(), `msg="delivery panicked`); got != 3 {
		t.Errorf("after queue flush delivery panicked %d times in all, want still 3", got)
	}
	p.stop(t)

	p = startFanmail(t, cfg, env...)
	time.Sleep(500 * time.Millisecond)
	if strings.Contains(p.log.String(), `msg="delivery panicked`) {
		t.Errorf("the message moved aside was tried again after a restart")
	}
	if out := fanmailCLI(t, cfg, "", "queue"); !strings.Contains(out, "MOVED ASIDE") {
		t.Errorf("after a restart fanmail queue does not show the message moved aside:\n%s", out)
	}
	if out := fanmailCLI(t, cfg, "", "queue", "delete", bad); !strings.Contains(out, "deleted "+bad) {
		t.Errorf("queue delete said %q", out)
	}
	if out := fanmailCLI(t, cfg, "", "queue"); strings.Contains(out, bad) {
		t.Errorf("after delete the message is still listed:\n%s", out)
	}
	p.stop(t)
}

// TestCrashLoopIsBroken: delivery of one post kills the server outright
// (SIGKILL through the test build's hook), so every start dies retrying
// it. Each attempt was recorded as started before delivery, so the
// fourth start finds three attempts that never ended, moves the post
// aside instead of trying it, and stays up delivering other mail.
func TestCrashLoopIsBroken(t *testing.T) {
	t.Parallel()
	n, cfg := victimLists(t, "", "deadly@lists.example.org", "victim@kill.test")
	env := []string{"FANMAIL_TEST_KILL_DOMAIN=kill.test"}

	p := startFanmail(t, cfg, env...)
	bad := postTo(t, p.addr, "poster@example.org", "deadly@lists.example.org", e2ePost)
	waitExit(t, p, 20*time.Second)
	deaths := 1
	var log strings.Builder
	for deaths < 10 {
		out, exited := runFor(t, env, 3*time.Second, "--config", cfg, "serve")
		log.WriteString(out)
		if !exited {
			break
		}
		deaths++
	}
	if deaths != 3 {
		t.Errorf("the server died %d times, want 3 (move_aside_after) before it moved the post aside\n%s", deaths, log.String())
	}
	if !strings.Contains(log.String(), "message moved aside") || !strings.Contains(log.String(), bad) {
		t.Errorf("no start logged moving %s aside:\n%s", bad, log.String())
	}
	p = startFanmail(t, cfg, env...)
	postTo(t, p.addr, "poster@example.org", e2eList, e2ePost)
	n.waitDelivered(t, 1, 30*time.Second, p)
	if out := fanmailCLI(t, cfg, "", "queue", "show", bad); !strings.Contains(out, "MOVED ASIDE") {
		t.Errorf("fanmail queue show %s:\n%s", bad, out)
	}
	p.stop(t)
}

// TestRepliesSurviveRewriteInDSN: a member refused with 550 while another
// is deferred is reported at once (a DSN at the list's bounce address
// while the other waits); small journal segments and a stream of other
// posts make the spool rewrite the message at the journal head and
// collect its first segment; after a restart the deferred member is
// refused too, and a second DSN quotes its reply with the MX that gave
// it, and does not report the first member again. The post goes through
// an alias, whose DSNs go to its owner-NAME at an MX, where they are
// read here (a list's go to its bounce address, read inside fanmail).
func TestRepliesSurviveRewriteInDSN(t *testing.T) {
	t.Parallel()
	domains := []string{"d00.test", "d01.test", "d02.test", "lists.example.org"}
	var refuseLater atomic.Bool
	n := newFakeNet(t, domains, func(d string) fakenet.SinkOptions {
		return fakenet.SinkOptions{DiscardBodies: d == "d02.test", RcptHook: func(_, to string) error {
			switch {
			case to == "gone@d00.test":
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
			case to == "later@d01.test" && refuseLater.Load():
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "refused at last"}
			case to == "later@d01.test":
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
			}
			return nil
		}}
	})
	dir := t.TempDir()
	file := writeFile(t, dir, "aliases", "team: gone@d00.test, later@d01.test\nowner-team: keeper@lists.example.org\n")
	runAs := "" // as root, programs must run as someone else
	if os.Geteuid() == 0 {
		runAs = `program_user = "nobody"`
	}
	dataDir := filepath.Join(dir, "data")
	cfg := n.writeConfig(t, dataDir, "[queue]\nsegment_size = \"64KB\"\nretry_min = \"1h\"\nretry_max = \"1h\"\nqueuewarn = \"0s\"\n"+
		fmt.Sprintf("[aliases]\nfiles = [%q]\nlocal_domains = [\"fanmail.test\"]\n%s\n", file, runAs))
	openList(t, cfg, "filler@lists.example.org")
	fanmailCLI(t, cfg, "f@d02.test\n", "member", "add", "filler@lists.example.org", "--file", "-")
	p := startFanmail(t, cfg)
	postTo(t, p.addr, "poster@example.org", "team@fanmail.test", e2ePost)
	mustLog(t, p, "status=deferred", 30*time.Second)
	// The hard failure is reported when the attempt that failed it ends,
	// while later@ is still deferred.
	owner := n.sinks["lists.example.org"]
	n.waitCount(t, "the first DSN", func() int { return len(owner.Deliveries()) }, 1, 30*time.Second, p)
	firstDSN := owner.Deliveries()[0].Data
	for _, want := range []string{"Final-Recipient: rfc822; gone@d00.test", "Diagnostic-Code: smtp; 550 5.1.1 no such user here",
		"Remote-MTA: dns; mx.d00.test", "Message-ID: <e2e-1@example.org>"} {
		if !bytes.Contains(firstDSN, []byte(want)) {
			t.Errorf("first DSN lacks %q:\n%s", want, firstDSN)
		}
	}
	if bytes.Contains(firstDSN, []byte("later@d01.test")) {
		t.Errorf("first DSN names the deferred later@d01.test:\n%s", firstDSN)
	}
	first, _ := filepath.Glob(filepath.Join(dataDir, "queue", "*.journal"))
	filler := strings.Replace(e2ePost, "Last line.", strings.Repeat("filler text to fill journal segments quickly\r\n", 200), 1)
	for i := range 40 {
		postTo(t, p.addr, "poster@example.org", "filler@lists.example.org", strings.Replace(filler, "e2e-1@", fmt.Sprintf("fill-%d@", i), 1))
	}
	n.waitDelivered(t, 40+1, 30*time.Second, p) // the fillers and the first DSN
	time.Sleep(300 * time.Millisecond)
	p.stop(t)
	if _, err := os.Stat(first[0]); !os.IsNotExist(err) {
		t.Fatalf("the post's first journal segment %s is still there: the spool never rewrote the post", first[0])
	}

	refuseLater.Store(true)
	p = startFanmail(t, cfg)
	fanmailCLI(t, cfg, "", "queue", "flush")
	n.waitCount(t, "the second DSN", func() int { return len(owner.Deliveries()) }, 2, 30*time.Second, p)
	time.Sleep(300 * time.Millisecond) // a third would show
	dels := owner.Deliveries()
	if len(dels) != 2 {
		t.Fatalf("%d messages at the alias's owner, want two DSNs", len(dels))
	}
	for _, want := range []string{
		"Final-Recipient: rfc822; later@d01.test", "Diagnostic-Code: smtp; 554 5.7.1 refused at last", "Remote-MTA: dns; mx.d01.test",
		"Message-ID: <e2e-1@example.org>",
	} {
		if !bytes.Contains(dels[1].Data, []byte(want)) {
			t.Errorf("second DSN lacks %q:\n%s", want, dels[1].Data)
		}
	}
	// The rewrite and the restart kept the record that gone@ was
	// reported: it is not reported again.
	if bytes.Contains(dels[1].Data, []byte("gone@d00.test")) {
		t.Errorf("second DSN reports gone@d00.test again:\n%s", dels[1].Data)
	}
	p.stop(t)
}

// waitExit waits for a server that is expected to die.
func waitExit(t *testing.T, p *proc, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("the server did not die within %v", timeout)
	}
}

// runFor runs fanmail with args for up to d: it returns the output and
// whether the process exited by itself in that time (else it is
// stopped with SIGTERM).
func runFor(t *testing.T, env []string, d time.Duration, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(fanmailBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	select {
	case <-exited:
		return out.String(), true
	case <-time.After(d):
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
	return out.String(), false
}
