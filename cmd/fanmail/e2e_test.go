package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
)

const e2eList = "announce@lists.example.org"

// e2eBounces is e2eList's bounce address, the envelope sender of
// everything fanmail sends for it.
const e2eBounces = "announce-bounces@lists.example.org"

const e2ePost = "From: Poster <poster@example.org>\r\n" +
	"To: announce@lists.example.org\r\n" +
	"Subject: end to end\r\n" +
	"Message-ID: <e2e-1@example.org>\r\n" +
	"\r\n" +
	"First line of the post.\r\n" +
	".leading dot survives dot-stuffing\r\n" +
	"Last line.\r\n"

// uneven member counts: some domains need several envelopes of r=100,
// one needs exactly one full envelope plus one recipient.
func e2eCounts(domains int) []int {
	counts := make([]int, domains)
	counts[0], counts[1], counts[2] = 250, 101, 100
	left := 1000 - 451
	for i := 3; i < domains; i++ {
		counts[i] = left / (domains - i)
		left -= counts[i]
	}
	return counts
}

// TestEndToEndFanout is the whole path with every part real: the built
// binary, a DNS server with an MX per domain, one SMTP sink per MX, a
// list of 1,000 members made through the CLI, one post over SMTP.
func TestEndToEndFanout(t *testing.T) {
	t.Parallel()
	domains := testDomains(20)
	counts := e2eCounts(len(domains))
	n := newFakeNet(t, domains, nil)
	cfg := n.newConfig(t, "")

	openList(t, cfg, e2eList, "--owner", "alice@example.org")
	file, members := membersFile(t, domains, counts)
	if out := fanmailCLI(t, cfg, "", "member", "add", e2eList, "--file", file); !strings.Contains(out, "1000") {
		t.Fatalf("member add said %q, want it to report 1000 members", out)
	}

	p := startFanmail(t, cfg)
	qid := postTo(t, p.addr, "poster@example.org", e2eList, e2ePost)
	n.waitDelivered(t, len(members), 60*time.Second, p)
	time.Sleep(200 * time.Millisecond) // would-be duplicates have time to show

	got := n.wantEachOnce(t, members)
	if len(got) != len(members) {
		t.Errorf("sinks saw %d distinct recipients, want %d", len(got), len(members))
	}
	for i, d := range domains {
		s := n.sinks[d]
		if want := (counts[i] + 99) / 100; s.Transactions() != want {
			t.Errorf("%s: %d DATA transactions for %d members, want %d", d, s.Transactions(), counts[i], want)
		}
		for _, del := range s.Deliveries() {
			if del.From != e2eBounces {
				t.Errorf("%s: envelope sender %q, want the list's bounce address", d, del.From)
			}
			if !bytes.HasSuffix(del.Data, []byte(e2ePost)) {
				t.Errorf("%s: post not intact:\n%s", d, del.Data)
			}
			if !bytes.Contains(del.Data, []byte("List-Id: <announce.lists.example.org>\r\n")) {
				t.Errorf("%s: no List-Id header:\n%s", d, del.Data)
			}
			if !bytes.Contains(del.Data, []byte("with ESMTP id "+qid)) {
				t.Errorf("%s: no Received header naming queue ID %s:\n%s", d, qid, del.Data)
			}
		}
	}
	p.stop(t)
}

// TestCrashAfterAcceptRedelivers kills the real process with SIGKILL after
// the 250, while half the domains have delivered and the other half are
// in the middle of DATA, then restarts it: every member gets the post,
// and nobody whose delivery was recorded gets it twice.
func TestCrashAfterAcceptRedelivers(t *testing.T) {
	t.Parallel()
	domains := testDomains(20)
	counts := e2eCounts(len(domains))
	var hold atomic.Bool // while set, sinks of held domains stall in DATA
	hold.Store(true)
	release := make(chan struct{})
	var stalled atomic.Int32
	held := func(d string) bool { return d >= "d10" }
	n := newFakeNet(t, domains, func(domain string) fakenet.SinkOptions {
		if !held(domain) {
			return fakenet.SinkOptions{}
		}
		return fakenet.SinkOptions{DataHook: func(fakenet.Delivery) error {
			if !hold.Load() {
				return nil
			}
			// The message is in but not acknowledged: the sender dies
			// now, so it must send it again.
			stalled.Add(1)
			<-release
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "aborted"}
		}}
	})
	cfg := n.newConfig(t, "[queue]\nretry_min = \"1s\"\nretry_max = \"2s\"\n")
	members := makeList(t, cfg, e2eList, domains, counts)

	p := startFanmail(t, cfg)
	postTo(t, p.addr, "poster@example.org", e2eList, e2ePost)

	var free int
	for i, d := range domains {
		if !held(d) {
			free += counts[i]
		}
	}
	n.waitDelivered(t, free, 60*time.Second, p)
	if !testutil.Poll(30*time.Second, 10*time.Millisecond, func() bool { return stalled.Load() > 0 }) {
		t.Fatal("no held domain reached DATA before the kill")
	}
	// Give the free domains' status records time to reach the journal:
	// one group commit takes milliseconds.
	time.Sleep(500 * time.Millisecond)
	p.kill(t)
	hold.Store(false)
	close(release)

	p = startFanmail(t, cfg)
	n.waitDistinct(t, len(members), 60*time.Second, p)
	if !strings.Contains(p.log.String(), `msg="queue recovered"`) {
		t.Errorf("restart did not log the recovered queue")
	}
	time.Sleep(300 * time.Millisecond)
	n.wantEachOnce(t, members)
	p.stop(t)
}

// TestQueuedBeforeStopDeliveredAfterRestart: a post accepted while every
// MX refuses is deferred; SIGTERM exits 0 with it still queued; the next
// start delivers it once the MX takes mail again.
func TestQueuedBeforeStopDeliveredAfterRestart(t *testing.T) {
	t.Parallel()
	domains := testDomains(3)
	var refuse atomic.Bool
	refuse.Store(true)
	var mu sync.Mutex
	refused := 0
	n := newFakeNet(t, domains, func(string) fakenet.SinkOptions {
		return fakenet.SinkOptions{ConnHook: func(string) *smtp.SMTPError {
			if !refuse.Load() {
				return nil
			}
			mu.Lock()
			refused++
			mu.Unlock()
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "not now"}
		}}
	})
	cfg := n.newConfig(t, "[queue]\nretry_min = \"1s\"\nretry_max = \"2s\"\n")
	p := serveList(t, cfg, "a@d00.test", "b@d01.test", "c@d02.test")
	postTo(t, p.addr, "poster@example.org", e2eList, e2ePost)
	testutil.Poll(20*time.Second, 10*time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return refused >= 3
	})
	p.stop(t)
	if !strings.Contains(p.log.String(), "status=deferred") {
		t.Fatalf("no deferral logged before the stop")
	}
	if n.delivered() != 0 {
		t.Fatalf("delivered %d recipients while every MX refused", n.delivered())
	}

	refuse.Store(false)
	p = startFanmail(t, cfg)
	n.waitDelivered(t, 3, 30*time.Second, p)
	if !strings.Contains(p.log.String(), `msg="queue recovered"`) {
		t.Errorf("restart did not log the recovered queue")
	}
	p.stop(t)
}

// TestServeDefaultsFlagsAndEnv runs the server with no config file: the
// environment and flags override the embedded defaults, and SIGINT stops
// it with exit status 0.
func TestServeDefaultsFlagsAndEnv(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	p := startFanmailArgs(t, []string{"FANMAIL_DATA_DIR=" + dataDir, "FANMAIL_HOSTNAME=env.test"},
		"serve", "--listen", "127.0.0.1:0", "--hostname", "flag.test")
	log := p.log.String()
	for _, want := range []string{"hostname=flag.test", "data_dir=" + dataDir} {
		if !strings.Contains(log, want) {
			t.Errorf("start-up log lacks %q:\n%s", want, log)
		}
	}
	c := mailFrom(t, p.addr, "client.test", "poster@example.org")
	var se *smtp.SMTPError
	if err := c.Rcpt("anyone@elsewhere.example", nil); !errors.As(err, &se) || se.Code != 550 {
		t.Errorf("relay attempt: %v, want 550", err)
	}
	c.Close()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if p.err != nil {
		t.Errorf("exit after SIGINT: %v, want status 0", p.err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "lists.db")); err != nil {
		t.Errorf("lists database not created under the data directory: %v", err)
	}
}

// TestBounceReadInside: recipients an MX refuses with 5xx produce one
// DSN, from the null sender, to the list's bounce address (never the
// poster), which fanmail reads itself: nothing reaches the list
// domain's MX, and each failure is recorded against its member.
func TestBounceReadInside(t *testing.T) {
	t.Parallel()
	domains := []string{"d00.test", "d01.test", "lists.example.org"}
	n := newFakeNet(t, domains, func(d string) fakenet.SinkOptions {
		return fakenet.SinkOptions{RcptHook: fakenet.RcptReplies{
			"gone": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"},
		}.Hook}
	})
	cfg := n.newConfig(t, "")
	p := serveList(t, cfg, "ok@d00.test", "gone1@d00.test", "gone2@d01.test", "ok@d01.test")
	postTo(t, p.addr, "poster@example.org", e2eList, e2ePost)
	n.waitDelivered(t, 2, 30*time.Second, p) // the two members
	if !waitLog(p, `msg="dsn queued"`) || !waitLog(p, "rcpt="+e2eBounces+" domain=lists.example.org relay=listmail") {
		t.Fatalf("no DSN read inside fanmail:\n%s", p.log.String())
	}
	if !strings.Contains(p.log.String(), "to="+e2eBounces+" action=failed rcpts=2") {
		t.Errorf("not one DSN for both failures to the bounce address:\n%s", p.log.String())
	}
	if got := len(n.sinks["lists.example.org"].Deliveries()); got != 0 {
		t.Errorf("%d messages went to the list domain's MX, want none", got)
	}
	for _, m := range []string{"gone1@d00.test", "gone2@d01.test"} {
		show := fanmailCLI(t, cfg, "", "member", "show", e2eList, m)
		for _, want := range []string{"delivery: enabled", "bounce score: 1 (threshold 5;", "550 5.1.1 no such user here"} {
			if !strings.Contains(squash(show), want) {
				t.Errorf("member show %s lacks %q:\n%s", m, want, show)
			}
		}
	}
	if show := fanmailCLI(t, cfg, "", "member", "show", e2eList, "ok@d00.test"); !strings.Contains(show, "no bounces recorded") {
		t.Errorf("a delivered member has bounces:\n%s", show)
	}
	p.stop(t)
}
