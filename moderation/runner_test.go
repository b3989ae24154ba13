package moderation

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/miekg/dns"

	"fanmail/dkim"
	"fanmail/dmarc"
	"fanmail/envelope"
	"fanmail/expander"
	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
	"fanmail/listaddr"
	"fanmail/lists"
	"fanmail/queuegroups"
	"fanmail/resolver"
)

const (
	list     = "l@lists.example.org"
	member   = "member@example.net"
	outsider = "outsider@example.com"
)

// mailbox is a Deliverer that takes every message and keeps it by
// recipient.
type mailbox struct {
	mu   sync.Mutex
	got  map[string][]string // recipient → messages
	from map[string][]string // recipient → envelope senders
}

func (m *mailbox) Deliver(_ context.Context, req envelope.Request) []envelope.Result {
	data, _ := io.ReadAll(req.Open())
	m.mu.Lock()
	defer m.mu.Unlock()
	var res []envelope.Result
	for _, r := range req.Recipients {
		m.got[r] = append(m.got[r], string(data))
		m.from[r] = append(m.from[r], req.Sender)
		res = append(res, envelope.Result{Recipient: r, Status: envelope.Delivered, Reply: envelope.Reply{Code: 250}})
	}
	return res
}

func (m *mailbox) messages(rcpt string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.got[rcpt]...)
}

// world is a store, a queue delivering into a mailbox, an expander and
// a DNS server, as the server wires them, and a clock the test moves.
type world struct {
	t     *testing.T
	store *lists.Store
	queue *queuegroups.Queue
	box   *mailbox
	exp   *expander.Expander
	dns   *fakenet.DNS
	keys  *dkim.Keyring
	ids   *queuegroups.IDSource
	clock *testutil.Clock
	logs  *testutil.SyncBuffer
}

func newWorld(t *testing.T, mods ...string) *world {
	t.Helper()
	return newNode(t, "", "", mods...)
}

// newNode is newWorld as one node among several: its store is opened on
// target (a fresh SQLite file in its directory when ""), created with
// the list unless the list is there, and its IDs carry node.
func newNode(t *testing.T, target, node string, mods ...string) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{t: t, box: &mailbox{got: map[string][]string{}, from: map[string][]string{}},
		ids: queuegroups.NewNodeIDSource(node), clock: testutil.NewClock(time.Now()), logs: &testutil.SyncBuffer{}}
	if target == "" {
		w.store = testutil.ListStore(t, dir, list, "owner@example.org", member)
	} else {
		var err error
		if w.store, err = lists.Open(target); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.store.Close() })
		if err := w.store.CreateList(context.Background(), list, "owner@example.org"); err == nil {
			if _, err := w.store.AddMembers(context.Background(), list, []string{member}); err != nil {
				t.Fatal(err)
			}
		} else if !errors.Is(err, lists.ErrListExists) {
			t.Fatal(err)
		}
	}
	if len(mods) > 0 {
		if _, err := w.store.AddModerators(context.Background(), list, mods); err != nil {
			t.Fatal(err)
		}
	}
	q, err := queuegroups.Open(queuegroups.Config{Groups: []queuegroups.GroupConfig{
		{Name: queuegroups.DefaultGroup, Dirs: []string{filepath.Join(dir, "q")}, Runners: 2},
		{Name: queuegroups.ControlGroup, Dirs: []string{filepath.Join(dir, "qc")}, Runners: 1},
	}, RetryMin: time.Minute, RetryMax: time.Hour, QueueReturn: time.Hour}, w.box)
	if err != nil {
		t.Fatal(err)
	}
	q.Start()
	t.Cleanup(func() { q.Close(context.Background()) })
	w.queue = q
	if w.dns, err = fakenet.NewDNS("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.dns.Close() })
	res, err := resolver.New(resolver.Config{Servers: []string{w.dns.Addr()}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	keyDir := filepath.Join(dir, "dkim")
	if _, err := dkim.Generate(keyDir, dkim.GenerateOptions{Domain: "lists.example.org", Selector: "s1", Algorithm: dkim.Ed25519}); err != nil {
		t.Fatal(err)
	}
	if w.keys, err = dkim.LoadKeyring(keyDir, nil); err != nil {
		t.Fatal(err)
	}
	w.exp = expander.New(w.store, "fanmail.test", nil).WithDMARC(dmarc.New(res)).WithKeys(w.keys)
	return w
}

func (w *world) runner() *Runner {
	return New(Config{Store: w.store, Expander: w.exp, Queue: w.queue, IDs: w.ids, Keys: w.keys,
		Hostname: "fanmail.test", Now: w.clock.Now, Logger: slog.New(slog.NewTextHandler(w.logs, nil))})
}

// post sends a post from sender through the expander, as ingress does.
func (w *world) post(sender, from string) *expander.Expansion {
	w.t.Helper()
	p := expander.Post{ID: w.ids.Next(), Received: w.clock.Now(), Sender: sender, Helo: "client.test", RemoteAddr: "192.0.2.1",
		Lists: []string{list}, Body: envelope.Bytes("From: " + from + "\r\nSubject: a question\r\nMessage-ID: <q@x>\r\n\r\nIs this on?\r\n")}
	exp, err := w.exp.Expand(context.Background(), p)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.queue.Enqueue(context.Background(), exp.Message); err != nil && !errors.Is(err, queuegroups.ErrNoRecipients) {
		w.t.Fatal(err)
	}
	return exp
}

func (w *world) scan(r *Runner) {
	w.t.Helper()
	if err := r.Scan(context.Background()); err != nil {
		w.t.Fatal(err)
	}
}

// wait waits until rcpt has n messages and returns them.
func (w *world) wait(rcpt string, n int) []string {
	w.t.Helper()
	if !testutil.Poll(10*time.Second, 5*time.Millisecond, func() bool { return len(w.box.messages(rcpt)) >= n }) {
		w.t.Fatalf("%s got %d messages, want %d\n%s", rcpt, len(w.box.messages(rcpt)), n, w.logs)
	}
	time.Sleep(50 * time.Millisecond) // would-be extra copies show up
	got := w.box.messages(rcpt)
	if len(got) != n {
		w.t.Fatalf("%s got %d messages, want %d", rcpt, len(got), n)
	}
	return got
}

var approveRE = regexp.MustCompile(`Reply-To: <?(l-approve\+([a-z2-7]+)@lists\.example\.org)>?`)

// TestNotifyAndApproveByMail: each moderator gets a notice with the post
// attached and a token of their own; replying to it is the approval; the
// runner distributes the post once, as the expander would have.
func TestNotifyAndApproveByMail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, "mod1@example.org", "mod2@example.org")
	r := w.runner()
	exp := w.post(outsider, outsider)
	if len(exp.Stored) != 1 {
		t.Fatalf("post from an outsider: %+v", exp)
	}
	w.scan(r)
	w.scan(r) // notified once only
	var tokens []string
	for _, mod := range []string{"mod1@example.org", "mod2@example.org"} {
		n := w.wait(mod, 1)[0]
		e, err := message.Read(strings.NewReader(n))
		if err != nil {
			t.Fatal(err)
		}
		m := approveRE.FindStringSubmatch(n)
		if m == nil {
			t.Fatalf("notice has no LIST-approve+TOKEN Reply-To:\n%s", n)
		}
		tokens = append(tokens, m[2])
		if subj, _ := e.Header.Text("Subject"); subj != "l@lists.example.org: post from outsider@example.com held for approval: a question" {
			t.Errorf("notice subject %q", subj)
		}
		for _, want := range []string{
			"From: \"l moderation\" <owner-l@lists.example.org>", "To: <" + mod + ">",
			"Auto-Submitted: auto-generated", "Content-Type: message/rfc822",
			"From: outsider@example.com\r\nSubject: a question\r\nMessage-ID: <q@x>\r\n\r\nIs this on?\r\n",
		} {
			if !strings.Contains(n, want) {
				t.Errorf("notice to %s lacks %q:\n%s", mod, want, n)
			}
		}
		if ct, _, _ := e.Header.ContentType(); ct != "multipart/mixed" {
			t.Errorf("notice is %s", ct)
		}
		text := partText(t, e, 0)
		if !strings.Contains(text, "l-reject+"+m[2]+"@lists.example.org") || !strings.Contains(text, "the sender is not a member") {
			t.Errorf("notice text does not name the reject address and the reason:\n%s", text)
		}
		if !strings.HasPrefix(n, "DKIM-Signature: v=1; a=ed25519-sha256;") {
			t.Errorf("notice not signed:\n%.200s", n)
		}
		if w.box.from[mod][0] != "l-bounces@lists.example.org" {
			t.Errorf("notice envelope sender %q", w.box.from[mod][0])
		}
	}
	if tokens[0] == tokens[1] {
		t.Error("both moderators got the same token")
	}
	// The moderator's reply, as ingress hands it to the expander.
	reply := expander.Post{ID: w.ids.Next(), Received: time.Now(), Sender: "mod2@example.org",
		Lists: []string{listaddr.Of(list, listaddr.Approve, tokens[1])},
		Body:  envelope.Bytes("From: mod2@example.org\r\nSubject: Re: held\r\n\r\nok\r\n")}
	rexp, err := w.exp.Expand(ctx, reply)
	if err != nil || !strings.HasPrefix(rexp.Reply, "Approved post") {
		t.Fatalf("approve by mail: %+v, %v", rexp, err)
	}
	// Two runners, as two servers on one store: one distribution.
	r2 := w.runner()
	var wg sync.WaitGroup
	for _, run := range []*Runner{r, r2} {
		wg.Go(func() { w.scan(run) })
	}
	wg.Wait()
	got := w.wait(member, 1)[0]
	for _, want := range []string{"List-Id: <l.lists.example.org>", "From: outsider@example.com\r\nSubject: a question\r\n", "Is this on?"} {
		if !strings.Contains(got, want) {
			t.Errorf("distributed copy lacks %q:\n%s", want, got)
		}
	}
	if posts, _ := w.store.Posts(ctx, lists.PostFilter{}); len(posts) != 0 {
		t.Errorf("posts left after distribution: %+v", posts)
	}
}

// partText returns the decoded text of part i of a multipart message.
func partText(t *testing.T, e *message.Entity, i int) string {
	t.Helper()
	mr := e.MultipartReader()
	for j := 0; ; j++ {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if j == i {
			b, _ := io.ReadAll(p.Body)
			return string(b)
		}
	}
}

// TestRejectNotifiesOnce: the poster of a rejected post gets one notice
// with the reason, never when the post came from the null sender.
func TestRejectNotifiesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	r := w.runner()
	a := w.post(outsider, outsider).Stored[0]
	b := w.post("", outsider).Stored[0]
	w.scan(r) // no moderator: the owner is notified of both
	w.wait("owner@example.org", 2)
	for _, id := range []int64{a, b} {
		if _, err := w.store.Decide(ctx, id, lists.Decision{Action: "reject", By: "cli:test", Note: "off topic here"}); err != nil {
			t.Fatal(err)
		}
	}
	w.scan(r)
	w.scan(r)
	n := w.wait(outsider, 1)[0]
	e, err := message.Read(strings.NewReader(n))
	if err != nil {
		t.Fatal(err)
	}
	if subj, _ := e.Header.Text("Subject"); subj != "Your post to l@lists.example.org was rejected: a question" {
		t.Errorf("rejection subject %q", subj)
	}
	for _, want := range []string{"Auto-Submitted: auto-replied", "off topic here", "Is this on?"} {
		if !strings.Contains(n, want) {
			t.Errorf("rejection notice lacks %q:\n%s", want, n)
		}
	}
	if posts, _ := w.store.Posts(ctx, lists.PostFilter{}); len(posts) != 0 {
		t.Errorf("posts left: %+v", posts)
	}
	if !strings.Contains(w.logs.String(), "null sender, so nobody is told") {
		t.Errorf("no log line for the null sender's post:\n%s", w.logs)
	}
}

// TestDMARCRetry: a post taken while its author's DMARC lookup failed is
// retried until the DNS answers, then distributed once, munged.
func TestDMARCRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	if err := w.store.SetSettings(ctx, list, [][2]string{{"posting", "open"}}); err != nil {
		t.Fatal(err)
	}
	w.dns.SetRcode("_dmarc.broken.example", dns.RcodeServerFailure)
	r := w.runner()
	exp := w.post(outsider, "Author <author@broken.example>")
	if len(exp.Stored) != 1 {
		t.Fatalf("post with DMARC failing: %+v", exp)
	}
	w.scan(r)
	p, _ := w.store.GetPost(ctx, exp.Stored[0])
	if p.Claim != "" || !p.NextTry.After(w.clock.Now()) || !strings.Contains(p.Reason, "DMARC lookup for broken.example failed") {
		t.Fatalf("after a failed retry: %+v", p)
	}
	w.scan(r) // not due yet: nothing happens
	w.dns.SetRcode("_dmarc.broken.example", dns.RcodeSuccess)
	if err := w.dns.AddRR(`_dmarc.broken.example. 300 IN TXT "v=DMARC1; p=reject"`); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(31 * time.Second)
	w.scan(r)
	got := w.wait(member, 1)[0]
	if !strings.Contains(got, "From: \"Author via l\" <l@lists.example.org>") {
		t.Errorf("copy not munged:\n%s", got)
	}
}

// TestRecoverClaims: a claim whose message reached the queue is
// finished; any other is given up and done again.
func TestRecoverClaims(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	a := w.post(outsider, outsider).Stored[0]
	b := w.post(outsider, outsider).Stored[0]
	for _, id := range []int64{a, b} {
		if _, err := w.store.Decide(ctx, id, lists.Decision{Action: "approve", By: "cli:test"}); err != nil {
			t.Fatal(err)
		}
	}
	// a: claimed and queued, then the crash; b: claimed, never queued.
	pa, _ := w.store.GetPost(ctx, a)
	m, err := w.exp.Distribute(ctx, expander.Post{ID: pa.QueueID, Received: pa.Received, Sender: pa.Sender,
		Body: envelope.Bytes("From: outsider@example.com\r\n\r\nbody\r\n")}, list, "QCLAIMEDA0000000")
	if err != nil {
		t.Fatal(err)
	}
	for id, qid := range map[int64]string{a: m.ID, b: "QNEVERQUEUED0000"} {
		if got, err := w.store.Claim(ctx, id, qid); err != nil || !got {
			t.Fatal(got, err)
		}
	}
	m.Mode = queuegroups.ModeQueue // still in the queue when the runner starts
	if err := w.queue.Enqueue(ctx, m); err != nil {
		t.Fatal(err)
	}
	r := w.runner()
	if err := r.recover(ctx); err != nil {
		t.Fatal(err)
	}
	w.queue.Flush("", "")
	if _, err := w.store.GetPost(ctx, a); err == nil {
		t.Error("a queued claim was not finished")
	}
	if p, err := w.store.GetPost(ctx, b); err != nil || p.Claim != "" {
		t.Errorf("an unqueued claim was not given up: %+v, %v", p, err)
	}
	w.scan(r)
	w.wait(member, 2) // a once (from the crash), b once (now)
}

// TestExpiry: a held post is gone when its time is up, with its tokens.
func TestExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, "mod@example.org")
	r := w.runner()
	id := w.post(outsider, outsider).Stored[0]
	w.scan(r)
	n := w.wait("mod@example.org", 1)[0]
	token := approveRE.FindStringSubmatch(n)[2]
	w.clock.Advance(13 * 24 * time.Hour)
	r.Expire(ctx)
	if _, err := w.store.GetPost(ctx, id); err != nil {
		t.Fatalf("expired a day early: %v", err)
	}
	w.clock.Advance(2 * 24 * time.Hour)
	r.Expire(ctx)
	if _, err := w.store.GetPost(ctx, id); err == nil {
		t.Fatal("held post did not expire after hold_days")
	}
	if !strings.Contains(w.logs.String(), "held post expired; discarded") {
		t.Errorf("no log line for the expiry:\n%s", w.logs)
	}
	// The store's own clock is the real one: the token is gone with the
	// post once the store expires it, whatever the clock.
	if err := w.store.CheckModerationToken(ctx, list, token, "approve"); err == nil {
		t.Error("the token of an expired post still works")
	}
}

// TestRunPicksUpApprovals: a running Runner notices a decision made
// through the store (as the CLI of another process makes it) by the
// store's version, and acts on it.
func TestRunPicksUpApprovals(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	w := newWorld(t, "mod@example.org")
	r := New(Config{Store: w.store, Expander: w.exp, Queue: w.queue, IDs: w.ids, Hostname: "fanmail.test",
		Poll: 10 * time.Millisecond, RescanEvery: time.Hour, Logger: slog.New(slog.NewTextHandler(w.logs, nil))})
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	id := w.post(outsider, outsider).Stored[0]
	w.wait("mod@example.org", 1)
	if _, err := w.store.Decide(context.Background(), id, lists.Decision{Action: "approve", By: "cli:test"}); err != nil {
		t.Fatal(err)
	}
	w.wait(member, 1)
}
