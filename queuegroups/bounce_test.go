package queuegroups

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"fanmail/envelope"
)

// dsnCatcher delivers by rule and keeps every null-sender message (the
// DSNs the queue generates), with its envelope.
type dsnCatcher struct {
	rule func(rcpt string) envelope.Status
	mu   sync.Mutex
	dsns []caught
}

type caught struct {
	env  envelope.Request
	body []byte
}

func (c *dsnCatcher) Deliver(_ context.Context, env envelope.Request) []envelope.Result {
	body, _ := io.ReadAll(env.Open())
	isDSN := env.Sender == "" && bytes.Contains(body, []byte("report-type=delivery-status"))
	res := make([]envelope.Result, len(env.Recipients))
	for i, r := range env.Recipients {
		switch st := c.rule(r); {
		case isDSN:
			res[i] = envelope.Result{Recipient: r, Status: envelope.Delivered, Reply: envelope.Reply{Code: 250}}
		case st == envelope.Failed:
			res[i] = envelope.Result{Recipient: r, Status: st, Reply: envelope.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}}
		case st == envelope.Deferred:
			res[i] = envelope.Result{Recipient: r, Status: st, Reply: envelope.Reply{Code: 451, Enhanced: "4.3.0", Text: "try later"}}
		default:
			res[i] = envelope.Result{Recipient: r, Status: st, Reply: envelope.Reply{Code: 250}}
		}
	}
	if isDSN {
		c.mu.Lock()
		c.dsns = append(c.dsns, caught{env, body})
		c.mu.Unlock()
	}
	return res
}

func (c *dsnCatcher) caught() []caught {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]caught(nil), c.dsns...)
}

// statusFields returns the per-recipient blocks of a DSN's
// message/delivery-status part.
func statusFields(t *testing.T, body []byte) string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("DSN is not multipart:\n%s", body)
	}
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no message/delivery-status part: %v", err)
		}
		if ct, _, _ := p.Header.ContentType(); ct == "message/delivery-status" {
			b, _ := io.ReadAll(p.Body)
			return string(b)
		}
	}
}

// TestDSNPerShare: failures in two queue groups are reported by each
// group's share when its pass ends, each failed recipient exactly once.
func TestDSNPerShare(t *testing.T) {
	t.Parallel()
	cfg := groupsConfig(t.TempDir())
	cfg.Hostname = "fanmail.test"
	c := &dsnCatcher{rule: func(r string) envelope.Status {
		if strings.HasPrefix(r, "u1-") || strings.HasPrefix(r, "u3-") {
			return envelope.Failed
		}
		return envelope.Delivered
	}}
	q := started(t, cfg, c)
	m := post(NewIDSource(), "Message-ID: <orig@example.org>\r\nSubject: x\r\n\r\nbody\r\n",
		map[string]int{"a.test": 4, "b.test": 4})
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queue to empty", func() bool { return q.Stats().Messages == 0 })
	dsns := c.caught()
	if len(dsns) != 2 {
		t.Fatalf("%d DSNs, want one per group's share", len(dsns))
	}
	fields := ""
	for _, d := range dsns {
		if d.env.Recipients[0] != "owner-list@example.org" || d.env.Sender != "" {
			t.Errorf("DSN envelope %q -> %v, want <> -> the list's bounce address", d.env.Sender, d.env.Recipients)
		}
		f := statusFields(t, d.body)
		if n := strings.Count(f, "Final-Recipient:"); n != 2 {
			t.Errorf("a DSN reports %d recipients, want its share's 2:\n%s", n, f)
		}
		if !bytes.Contains(d.body, []byte("Message-ID: <orig@example.org>")) {
			t.Errorf("DSN does not carry the original header")
		}
		fields += f
	}
	for _, want := range []string{
		"Reporting-MTA: dns; fanmail.test",
		"Final-Recipient: rfc822; u1-" + m.ID + "@a.test",
		"Final-Recipient: rfc822; u3-" + m.ID + "@a.test",
		"Final-Recipient: rfc822; u1-" + m.ID + "@b.test",
		"Final-Recipient: rfc822; u3-" + m.ID + "@b.test",
		"Action: failed",
		"Status: 5.1.1",
		"Diagnostic-Code: smtp; 550 5.1.1 no such user",
	} {
		if !strings.Contains(fields, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, fields)
		}
	}
	if n := strings.Count(fields, "Final-Recipient:"); n != 4 {
		t.Errorf("%d recipients reported, want the 4 that failed", n)
	}
}

func TestNoDSNForNullSender(t *testing.T) {
	t.Parallel()
	c := &dsnCatcher{rule: func(string) envelope.Status { return envelope.Failed }}
	q := started(t, groupsConfig(t.TempDir()), c)
	m := post(NewIDSource(), "x", map[string]int{"a.test": 2})
	for i := range m.Parts[0].Envelopes {
		m.Parts[0].Envelopes[i].Sender = ""
	}
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queue to empty", func() bool { return q.Stats().Messages == 0 })
	if n := len(c.caught()); n != 0 {
		t.Errorf("%d DSNs for a null-sender message, want none", n)
	}
}

func TestExpiryDSNAndDelayWarning(t *testing.T) {
	t.Parallel()
	cfg := groupsConfig(t.TempDir())
	cfg.QueueReturn = 400 * time.Millisecond
	cfg.QueueWarn = 100 * time.Millisecond
	cfg.RetryMin, cfg.RetryMax = 30*time.Millisecond, 30*time.Millisecond
	c := &dsnCatcher{rule: func(string) envelope.Status { return envelope.Deferred }}
	q := started(t, cfg, c)
	if err := q.Enqueue(context.Background(), post(NewIDSource(), "x", map[string]int{"a.test": 2})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queue to empty", func() bool { return q.Stats().Messages == 0 && len(c.caught()) == 2 })
	dsns := c.caught()
	warn, bounce := statusFields(t, dsns[0].body), statusFields(t, dsns[1].body)
	if !strings.Contains(warn, "Action: delayed") || !strings.Contains(warn, "Will-Retry-Until:") || strings.Count(warn, "Final-Recipient") != 2 {
		t.Errorf("first DSN is not the delay warning for both recipients:\n%s", warn)
	}
	if !strings.Contains(bounce, "Action: failed") || !strings.Contains(bounce, "Status: 5.4.7") {
		t.Errorf("second DSN is not the expiry bounce:\n%s", bounce)
	}
	if !bytes.Contains(dsns[1].body, []byte("queue lifetime expired; last reply: 451 4.3.0 try later")) {
		t.Errorf("expiry bounce does not give the last reply:\n%s", dsns[1].body)
	}
}

// TestDSNBeforeOthersAreFinal: a recipient that fails for good is
// reported when the pass that failed it ends, while the other group's
// recipients are still deferred; a restart reports nobody again; a later
// failure of the same message gets a DSN of its own naming only it.
func TestDSNBeforeOthersAreFinal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := groupsConfig(dir)
	cfg.RetryMin, cfg.RetryMax, cfg.QueueReturn = time.Hour, time.Hour, 24*time.Hour
	var bState atomic.Int32 // what b.test answers
	bState.Store(int32(envelope.Deferred))
	rule := func(r string) envelope.Status {
		switch {
		case strings.HasSuffix(r, "@a.test") && strings.HasPrefix(r, "u0-"):
			return envelope.Failed
		case strings.HasSuffix(r, "@b.test") && strings.HasPrefix(r, "u0-"):
			return envelope.Status(bState.Load())
		}
		return envelope.Delivered
	}
	c := &dsnCatcher{rule: rule}
	q := started(t, cfg, c)
	m := post(NewIDSource(), "x", map[string]int{"a.test": 2, "b.test": 2})
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first DSN", func() bool { return len(c.caught()) == 1 })
	// The DSN is a message of its own until its delivery is applied.
	var s Stats
	waitFor(t, "the DSN's own delivery to be applied", func() bool { s = q.Stats(); return s.Messages == 1 })
	if s.Recipients != 1 || s.Deferred != 1 {
		t.Errorf("while the DSN went out: %d recipients pending, %d deferred envelopes; want b's one, deferred", s.Recipients, s.Deferred)
	}
	if f := statusFields(t, c.caught()[0].body); !strings.Contains(f, "u0-"+m.ID+"@a.test") || strings.Count(f, "Final-Recipient") != 1 {
		t.Errorf("first DSN:\n%s", f)
	}
	q.Close(context.Background())

	// After a restart nobody is reported again, and b's later failure
	// gets its own DSN.
	bState.Store(int32(envelope.Failed))
	c2 := &dsnCatcher{rule: rule}
	q2 := started(t, cfg, c2)
	q2.Flush("", "")
	waitFor(t, "the queue to empty", func() bool { return q2.Stats().Messages == 0 })
	dsns := c2.caught()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs after the restart, want 1", len(dsns))
	}
	if f := statusFields(t, dsns[0].body); !strings.Contains(f, "u0-"+m.ID+"@b.test") || strings.Count(f, "Final-Recipient") != 1 {
		t.Errorf("DSN after restart:\n%s", f)
	}
	q2.Close(context.Background())

	// A third start finds nothing owed.
	c3 := &dsnCatcher{rule: rule}
	q3 := started(t, cfg, c3)
	// Start queues what is owed before it returns: a DSN would be a
	// message now, or, once delivered, caught (read in that order).
	msgs := q3.Stats().Messages
	if n := len(c3.caught()); n != 0 || msgs != 0 {
		t.Errorf("third start: %d DSNs, %d messages; want none", n, msgs)
	}
}
