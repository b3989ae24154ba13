package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
)

// holdData returns a sink DATA hook that holds each transaction for
// hold and counts it in c under group while it does.
func holdData(c *testutil.InFlight, group string, hold time.Duration) func(fakenet.Delivery) error {
	return func(fakenet.Delivery) error {
		c.Enter(group)
		defer c.Leave(group)
		time.Sleep(hold)
		return nil
	}
}

// TestRunnerCapsAtTheSinks: two groups of 3 runners under a global cap of
// 4; the sinks never see more transactions at once than that.
func TestRunnerCapsAtTheSinks(t *testing.T) {
	t.Parallel()
	var domains, bDomains []string
	for i := 0; i < 5; i++ {
		domains = append(domains, fmt.Sprintf("a%02d.test", i))
		b := fmt.Sprintf("b%02d.test", i)
		domains = append(domains, b)
		bDomains = append(bDomains, `"`+b+`"`)
	}
	var c testutil.InFlight // DATA transactions at the sinks, by group (domain prefix)
	n := newFakeNet(t, domains, func(d string) fakenet.SinkOptions {
		return fakenet.SinkOptions{DataHook: holdData(&c, d[:1], 20*time.Millisecond)}
	})
	cfg := n.newConfig(t, fmt.Sprintf(`
[queue]
runners = 3
recipients_per_envelope = 10
max_queue_children = 4
[[queue.group]]
name = "b"
path = "queue-b"
[[queue.rule]]
domains = [%s]
group = "b"
`, strings.Join(bDomains, ", ")))
	counts := each(len(domains), 100)
	members := makeList(t, cfg, e2eList, domains, counts)
	p := startFanmail(t, cfg)
	postTo(t, p.addr, "poster@example.org", e2eList, e2ePost)
	n.waitDelivered(t, len(members), 60*time.Second, p)
	if c.Peak("a") > 3 || c.Peak("b") > 3 {
		t.Errorf("peak transactions per group a=%d b=%d, want at most 3 (runners)", c.Peak("a"), c.Peak("b"))
	}
	if c.PeakAll() > 4 {
		t.Errorf("peak transactions over all groups %d, want at most 4 (max_queue_children)", c.PeakAll())
	}
	if c.PeakAll() < 4 {
		t.Errorf("peak transactions %d never reached the cap of 4: the test proves nothing", c.PeakAll())
	}
	for _, d := range domains {
		if got := n.sinks[d].Transactions(); got != 10 {
			t.Errorf("%s: %d transactions for 100 members at r=10, want 10", d, got)
		}
	}
	p.stop(t)
}

// TestSmallPostDuringBigFanout: a 10-member list's post, sent while a
// 100,000-member fan-out is delivering, is delivered within seconds and
// before the fan-out ends.
func TestSmallPostDuringBigFanout(t *testing.T) {
	t.Parallel()
	big := testDomains(100)
	small := []string{"small0.test", "small1.test"}
	n := newFakeNet(t, append(append([]string{}, big...), small...), func(d string) fakenet.SinkOptions {
		o := fakenet.SinkOptions{DiscardBodies: true}
		if !strings.HasPrefix(d, "small") {
			// Slow the fan-out down so it is surely still running.
			o.DataHook = func(fakenet.Delivery) error { time.Sleep(15 * time.Millisecond); return nil }
		}
		return o
	})
	cfg := n.newConfig(t, "[queue]\nrunners = 16\n")
	counts := each(len(big), 1000)
	members := makeList(t, cfg, e2eList, big, counts)
	openList(t, cfg, "small@lists.example.org")
	var smallMembers strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&smallMembers, "m%d@%s\n", i, small[i%2])
	}
	fanmailCLI(t, cfg, smallMembers.String(), "member", "add", "small@lists.example.org", "--file", "-")

	p := startFanmail(t, cfg)
	postTo(t, p.addr, "poster@example.org", e2eList, e2ePost)
	n.waitDelivered(t, 2000, 60*time.Second, p)
	start := time.Now()
	postTo(t, p.addr, "poster@example.org", "small@lists.example.org",
		strings.Replace(e2ePost, "e2e-1@", "small-1@", 1))
	for n.sinks[small[0]].RecipientsDelivered()+n.sinks[small[1]].RecipientsDelivered() < 10 {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the small post was not delivered within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	bigDone := n.delivered() - 10
	t.Logf("small post delivered in %v, with %d of %d fan-out recipients delivered", took, bigDone, len(members))
	if bigDone >= len(members) {
		t.Errorf("the fan-out finished before the small post: nothing was shown")
	}
	if took > 5*time.Second {
		t.Errorf("small post took %v during the fan-out, want seconds at most", took)
	}
	n.waitDelivered(t, len(members)+10, 3*time.Minute, p)
	p.stop(t)
}

// TestQueueTools runs the queue commands against a running server whose
// MXs defer everything, then against the spool with the server stopped.
func TestQueueTools(t *testing.T) {
	t.Parallel()
	domains := testDomains(2)
	n, refuse := newDeferringNet(t, domains, smtp.EnhancedCode{4, 7, 0}, "try later")
	cfg := n.newConfig(t, "[queue]\nretry_min = \"1h\"\nretry_max = \"1h\"\n")
	p := serveList(t, cfg, "a@d00.test", "b@d00.test", "c@d01.test")
	keep := postTo(t, p.addr, "poster@example.org", e2eList, e2ePost)
	drop := postTo(t, p.addr, "poster@example.org", e2eList, strings.Replace(e2ePost, "e2e-1@", "e2e-2@", 1))
	p.logged("status=deferred", 6, 20*time.Second) // until every recipient had its first attempt

	out := fanmailCLI(t, cfg, "", "queue")
	for _, want := range []string{"GROUP", "default", "queue-control", "top domains: d00.test 4, d01.test 2", keep, drop, "6 recipients pending"} {
		if !strings.Contains(out, want) {
			t.Errorf("fanmail queue lacks %q:\n%s", want, out)
		}
	}
	show := fanmailCLI(t, cfg, "", "queue", "show", keep)
	for _, want := range []string{"envelope to d00.test via group default", "pending   a@d00.test", "451 4.7.0 try later", "sender <" + e2eBounces + ">"} {
		if !strings.Contains(show, want) {
			t.Errorf("fanmail queue show lacks %q:\n%s", want, show)
		}
	}
	if out := fanmailCLI(t, cfg, "", "queue", "delete", drop); !strings.Contains(out, "deleted "+drop+" (3 pending recipients dropped; no DSN is sent to the sender)") {
		t.Errorf("queue delete said %q", out)
	}
	refuse.Store(false)
	if out := fanmailCLI(t, cfg, "", "queue", "flush", "--domain", "D00.test"); !strings.Contains(out, "1 deferred envelopes are due now") {
		t.Errorf("queue flush --domain said %q", out)
	}
	n.waitDelivered(t, 2, 20*time.Second, p)
	p.stop(t)

	// With the server stopped the tools read the spool itself.
	cmd := exec.Command(fanmailBinary(t), "--config", cfg, "queue")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("offline queue listing: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "reading the queue directly") ||
		!strings.Contains(stdout.String(), "1 recipients pending") || strings.Contains(stdout.String(), drop) {
		t.Errorf("offline listing:\n%s\n%s", stdout.String(), stderr.String())
	}
	cmd = exec.Command(fanmailBinary(t), "--config", cfg, "queue", "flush")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "retried when fanmail serve starts") {
		t.Errorf("offline flush: %v %s", err, out)
	}
	if out := fanmailCLI(t, cfg, "", "queue", "delete", keep); !strings.Contains(out, "1 pending recipients dropped") {
		t.Errorf("offline delete said %q", out)
	}
	if out := fanmailCLI(t, cfg, "", "queue"); !strings.Contains(out, "0 recipients pending") {
		t.Errorf("after offline delete:\n%s", out)
	}
}

// wire notes when the sinks answered each transaction, to count the
// recipients on the wire at a kill: the transactions the sinks answered
// after the kill were in DATA when the client died (the next server
// starts only after it is dead); those answered shortly before it
// (wireSlack) may have had their reply unread by the client, or read
// and not yet written to the journal: on two cores under the race
// detector that takes tens of milliseconds.
type wire struct {
	mu       sync.Mutex
	answered []answer
}

type answer struct {
	at    time.Time
	rcpts int
}

const wireSlack = 50 * time.Millisecond

func (w *wire) record(d fakenet.Delivery, at time.Time) {
	w.mu.Lock()
	w.answered = append(w.answered, answer{at, len(d.Recipients)})
	w.mu.Unlock()
}

// between counts the recipients answered after from and before to.
func (w *wire) between(from, to time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, a := range w.answered {
		if a.at.After(from) && a.at.Before(to) {
			n += a.rcpts
		}
	}
	return n
}

// missing counts the pairs of soak post and member not delivered yet.
func missing(n *fakeNet, kills int, members []string) int {
	left := 0
	for i := 0; i <= kills; i++ {
		for _, m := range members {
			if soakCopies(n, i, m) == 0 {
				left++
			}
		}
	}
	return left
}

// soakCopies counts the copies of soak post i the sinks got for member.
func soakCopies(n *fakeNet, i int, member string) int {
	key := fmt.Sprintf("<soak-%d@example.org>", i)
	count := 0
	for _, s := range n.sinks {
		count += s.PairCount(key, member)
	}
	return count
}

// TestCrashSoakAcrossGroups kills the server with SIGKILL at random
// moments while posts fan out over three groups (one with two
// directories), restarting it each time: every recipient of every post
// is delivered, duplicates stay within what was on the wire at the kills
// (each transaction's outcome is recorded as soon as its reply is in),
// and the journals never hold a record replay cannot read.
func TestCrashSoakAcrossGroups(t *testing.T) {
	t.Parallel()
	kills := 4
	if s := os.Getenv("FANMAIL_SOAK_KILLS"); s != "" {
		fmt.Sscan(s, &kills)
	}
	domains := testDomains(30)
	var bRule, cRule []string
	for _, d := range domains[10:20] {
		bRule = append(bRule, `"`+d+`"`)
	}
	for _, d := range domains[20:] {
		cRule = append(cRule, `"`+d+`"`)
	}
	w := &wire{}
	n := newFakeNet(t, domains, func(string) fakenet.SinkOptions {
		return fakenet.SinkOptions{DiscardBodies: true, OnRecord: w.record, DataHook: func(fakenet.Delivery) error {
			time.Sleep(time.Duration(2+rand.IntN(10)) * time.Millisecond)
			return nil
		}}
	})
	dataDir := filepath.Join(t.TempDir(), "data")
	for _, d := range []string{"b/q1", "b/q2"} {
		if err := os.MkdirAll(filepath.Join(dataDir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	// Envelopes of r=100 sent as transactions of 25: four per envelope,
	// each recorded as soon as its reply is in.
	const runners, r, perTxn = 8, 100, 25
	cfg := n.writeConfigDelivery(t, dataDir, fmt.Sprintf("recipients_per_transaction = %d", perTxn), fmt.Sprintf(`
[queue]
runners = %d
recipients_per_envelope = %d
retry_min = "1s"
retry_max = "2s"
# Kills at random moments during the same delivery would look like a
# crash loop to the spool (it cannot tell who killed it); this test is
# about what a kill loses or repeats, so it does not move mail aside.
move_aside_after = 1000
[[queue.group]]
name = "b"
path = "b/q*"
[[queue.group]]
name = "c"
path = "queue-c"
recipients_per_envelope = 70
[[queue.rule]]
domains = [%s]
group = "b"
[[queue.rule]]
domains = [%s]
group = "c"
`, runners, r, strings.Join(bRule, ", "), strings.Join(cRule, ", ")))
	counts := each(len(domains), 100)
	members := makeList(t, cfg, e2eList, domains, counts)

	dupsNow := func() int {
		dups := 0
		for _, s := range n.sinks {
			dups += s.Duplicates()
		}
		return dups
	}
	var logs strings.Builder
	killedAt := make([]time.Time, kills+1)
	startedAt := make([]time.Time, kills+1)
	dupsAfter := make([]int, kills+1) // duplicates counted by the next kill (or the end)
	for i := 0; i <= kills; i++ {
		startedAt[i] = time.Now()
		p := startFanmail(t, cfg)
		postTo(t, p.addr, "poster@example.org", e2eList, strings.Replace(e2ePost, "e2e-1@", fmt.Sprintf("soak-%d@", i), 1))
		if i == kills {
			// Every post to every member, counted once: the total
			// delivered includes duplicates.
			if !testutil.Poll(2*time.Minute, 50*time.Millisecond, func() bool { return missing(n, kills, members) == 0 }) {
				t.Logf("queue:\n%s", fanmailCLI(t, cfg, "", "queue"))
				t.Fatalf("%d post-member pairs still undelivered after 2 minutes", missing(n, kills, members))
			}
			time.Sleep(300 * time.Millisecond)
			p.stop(t)
		} else {
			time.Sleep(time.Duration(20+rand.IntN(200)) * time.Millisecond)
			killedAt[i] = time.Now()
			p.kill(t)
		}
		dupsAfter[i] = dupsNow()
		logs.WriteString(p.log.String())
	}
	dups := dupsNow()
	for i := 0; i <= kills; i++ {
		for _, m := range members {
			if soakCopies(n, i, m) == 0 {
				t.Fatalf("post %d never reached %s", i, m)
			}
		}
	}
	// Only transactions on the wire at a kill may go out twice: the
	// outcome of every transaction answered before it is on disk, not
	// only that of whole envelopes.
	inData, answered := 0, 0
	for i := range kills {
		// In DATA at kill i: what the sinks answered after it, until
		// the next server started; answered just before it: replies
		// the client may not have read.
		d := w.between(killedAt[i], startedAt[i+1])
		a := w.between(killedAt[i].Add(-wireSlack), killedAt[i])
		inData, answered = inData+d, answered+a
		// A kill's duplicates are mostly sent after the restart that
		// follows it.
		t.Logf("kill %d: %d recipients in DATA, %d answered in the %v before; %d duplicates after the restart",
			i+1, d, a, wireSlack, dupsAfter[i+1]-dupsAfter[i])
	}
	// The margin of one transaction per kill is for a reply read just
	// outside wireSlack on a loaded machine.
	if limit := inData + answered + kills*perTxn; dups > limit {
		t.Errorf("%d duplicate deliveries over %d kills, more than the %d recipients on the wire at the kills (%d in DATA, %d answered just before) and one transaction per kill",
			dups, kills, limit, inData, answered)
	}
	if strings.Contains(logs.String(), "skipping unreadable record") {
		t.Errorf("replay met an unreadable record:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "message moved aside") {
		t.Errorf("a message was moved aside: the kills were taken for a crash loop")
	}
	per := func(n int) float64 { return float64(n) / float64(max(kills, 1)) }
	t.Logf("%d kills, %d posts of %d recipients: %.1f duplicates per kill; on the wire per kill %.1f recipients in DATA and %.1f answered in the %v before",
		kills, kills+1, len(members), per(dups), per(inData), per(answered), wireSlack)
}
