package queuegroups

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/testutil"
)

// recorder is a scripted receiving side: it reads every message fully, as
// an SMTP client would, and answers per recipient by a rule.
type recorder struct {
	mu     sync.Mutex
	got    map[string]int    // recipient → deliveries
	bodies map[string]string // recipient → last content
	rule   func(rcpt string, attempt int) envelope.Status
	tries  map[string]int
}

func newRecorder(rule func(string, int) envelope.Status) *recorder {
	return &recorder{got: map[string]int{}, bodies: map[string]string{}, tries: map[string]int{}, rule: rule}
}

// deferring is a recorder rule that defers the recipient *rcpt names
// at the time and delivers every other.
func deferring(rcpt *string) func(string, int) envelope.Status {
	return func(r string, _ int) envelope.Status {
		if r == *rcpt {
			return envelope.Deferred
		}
		return envelope.Delivered
	}
}

func (r *recorder) Deliver(ctx context.Context, env envelope.Request) []envelope.Result {
	data, err := io.ReadAll(env.Open())
	if err != nil || int64(len(data)) != env.Size {
		panic(fmt.Sprintf("read body: %v (%d of %d bytes)", err, len(data), env.Size))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	res := make([]envelope.Result, len(env.Recipients))
	for i, rcpt := range env.Recipients {
		r.tries[rcpt]++
		st := envelope.Delivered
		if r.rule != nil {
			st = r.rule(rcpt, r.tries[rcpt])
		}
		res[i] = envelope.Result{Recipient: rcpt, Status: st, Reply: envelope.Reply{Code: 250}}
		if st == envelope.Delivered {
			r.got[rcpt]++
			r.bodies[rcpt] = string(data)
		}
	}
	return res
}

func (r *recorder) body(rcpt string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bodies[rcpt]
}

func (r *recorder) count(rcpt string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[rcpt]
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.got {
		n += c
	}
	return n
}

// testConfig is a spool with the default group in dir and the control
// group beside it.
func testConfig(dir string) Config {
	return Config{
		Groups: []GroupConfig{
			{Name: DefaultGroup, Dirs: []string{dir}, Runners: 4},
			{Name: ControlGroup, Dirs: []string{filepath.Join(dir, "control")}, Runners: 1},
		},
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, QueueReturn: time.Hour,
	}
}

// route is the expander's routing for groupsConfig: b.test and its
// subdomains go to group b, 2 recipients an envelope; every other
// domain to the default group, 4 an envelope.
func route(domain string) (group string, perEnvelope int) {
	if domain == "b.test" || strings.HasSuffix(domain, ".b.test") {
		return "b", 2
	}
	return DefaultGroup, 4
}

func testMessage(ids *IDSource, domains, perDomain int) *Message {
	m := &Message{ID: ids.Next(), Received: time.Now(), Body: envelope.Bytes("Subject: hi\r\n\r\nhello\r\n")}
	p := Part{Prefix: []byte("List-Id: <list.example.org>\r\n")}
	for d := 0; d < domains; d++ {
		var rcpts []string
		for i := 0; i < perDomain; i++ {
			rcpts = append(rcpts, fmt.Sprintf("u%d-%s@d%d.test", i, m.ID, d))
		}
		p.Envelopes = append(p.Envelopes, envelope.Envelope{Sender: "owner-list@example.org", Domain: fmt.Sprintf("d%d.test", d), Recipients: rcpts})
	}
	m.Parts = []Part{p}
	return m
}

// enqueueFillers queues n messages to domains×perDomain recipients with
// a 500-byte body, to fill journal segments.
func enqueueFillers(t *testing.T, q *Queue, ids *IDSource, n, domains, perDomain int) {
	t.Helper()
	for range n {
		m := testMessage(ids, domains, perDomain)
		m.Body = envelope.Bytes(strings.Repeat("x", 500))
		if err := q.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// opened opens a spool on cfg that delivers through d and is closed when
// the test ends; its runners wait for Start.
func opened(t *testing.T, cfg Config, d Deliverer) *Queue {
	t.Helper()
	q, err := Open(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(context.Background()) })
	return q
}

// started is opened with the runners started.
func started(t *testing.T, cfg Config, d Deliverer) *Queue {
	t.Helper()
	q := opened(t, cfg, d)
	q.Start()
	return q
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, what, cond)
}

func TestDeliversEveryRecipientOnceWithPrefix(t *testing.T) {
	t.Parallel()
	rec := newRecorder(nil)
	q := started(t, testConfig(t.TempDir()), rec)
	ids := NewIDSource()
	m := testMessage(ids, 5, 7)
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all delivered", func() bool { return q.Stats().Messages == 0 })
	if got := rec.total(); got != 35 {
		t.Fatalf("delivered %d, want 35", got)
	}
	for _, e := range m.Parts[0].Envelopes {
		for _, r := range e.Recipients {
			if rec.count(r) != 1 {
				t.Errorf("%s delivered %d times", r, rec.count(r))
			}
			if want := "List-Id: <list.example.org>\r\nSubject: hi\r\n\r\nhello\r\n"; rec.bodies[r] != want {
				t.Errorf("%s got %q, want %q", r, rec.bodies[r], want)
			}
		}
	}
}

func TestDeferredRecipientIsRetriedAlone(t *testing.T) {
	t.Parallel()
	rec := newRecorder(func(rcpt string, attempt int) envelope.Status {
		if strings.HasPrefix(rcpt, "u0-") && attempt < 3 {
			return envelope.Deferred
		}
		return envelope.Delivered
	})
	q := started(t, testConfig(t.TempDir()), rec)
	m := testMessage(NewIDSource(), 1, 3)
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all delivered", func() bool { return q.Stats().Messages == 0 })
	for _, r := range m.Parts[0].Envelopes[0].Recipients {
		if rec.count(r) != 1 {
			t.Errorf("%s delivered %d times, want once", r, rec.count(r))
		}
	}
	if n := rec.tries[m.Parts[0].Envelopes[0].Recipients[0]]; n != 3 {
		t.Errorf("deferred recipient tried %d times, want 3", n)
	}
}

func TestExpiredRecipientFails(t *testing.T) {
	t.Parallel()
	expired(t, 1, 2)
}

func TestRecoveryDeliversPendingAndSkipsDelivered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ids := NewIDSource()
	// First run: u0 is delivered, the others are deferred far into the future.
	first := newRecorder(func(rcpt string, _ int) envelope.Status {
		if strings.HasPrefix(rcpt, "u0-") {
			return envelope.Delivered
		}
		return envelope.Deferred
	})
	cfg := testConfig(dir)
	cfg.RetryMin, cfg.RetryMax, cfg.QueueReturn = time.Hour, time.Hour, 24*time.Hour
	q := started(t, cfg, first)
	m := testMessage(ids, 2, 3)
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first attempts", func() bool { return q.Stats().Deferred == 2 })
	q.Close(context.Background())

	// Second run: everything pending is delivered once it is flushed.
	second := newRecorder(nil)
	q2, err := Open(cfg, second)
	if err != nil {
		t.Fatal(err)
	}
	if s := q2.Stats(); s.Recipients != 4 {
		t.Fatalf("recovered %d pending recipients, want 4", s.Recipients)
	}
	q2.Start()
	q2.Flush("", "")
	defer q2.Close(context.Background())
	waitFor(t, "recovered delivery", func() bool { return q2.Stats().Messages == 0 })
	for _, e := range m.Parts[0].Envelopes {
		for _, r := range e.Recipients {
			want := 1
			if strings.HasPrefix(r, "u0-") {
				want = 0
			}
			if got := second.count(r); got != want {
				t.Errorf("%s delivered %d times after restart, want %d", r, got, want)
			}
		}
	}
}

func TestTornTailIsSkipped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ids := NewIDSource()
	q, err := Open(testConfig(dir), newRecorder(nil))
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage(ids, 1, 2)
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	q.Close(context.Background())
	// A second message whose record was cut short by a crash.
	seqs, _ := listSegments(dir)
	path := segmentPath(dir, seqs[len(seqs)-1])
	ms := newMsgState(ids.Next(), time.Now(), nil)
	ms.parts = []partState{{sender: "x"}}
	full, err := encodeHead(ms, envelope.Bytes("body"))
	if err != nil {
		t.Fatal(err)
	}
	torn := append(append(full.frame, encodeEnvelope(ms.id, 0, 0, "d", []string{"a@d"})...), encodeCommit(ms.id, 1)...)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(torn[:len(torn)-3])
	f.Close()

	rec := newRecorder(nil)
	q2, err := Open(testConfig(dir), rec)
	if err != nil {
		t.Fatalf("reopen after torn write: %v", err)
	}
	if s := q2.Stats(); s.Messages != 1 || s.Recipients != 2 {
		t.Fatalf("recovered %+v, want the one intact message with 2 recipients", s)
	}
	q2.Start()
	defer q2.Close(context.Background())
	waitFor(t, "delivery after torn tail", func() bool { return q2.Stats().Messages == 0 })
}

func TestOldSegmentsAreCollected(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ids := NewIDSource()
	stuck := ""
	rec := newRecorder(deferring(&stuck))
	cfg := testConfig(dir)
	cfg.SegmentSize = 4 << 10
	cfg.RetryMin, cfg.RetryMax, cfg.QueueReturn = time.Hour, time.Hour, 24*time.Hour
	q := started(t, cfg, rec)
	first := testMessage(ids, 1, 1)
	stuck = first.Parts[0].Envelopes[0].Recipients[0]
	if err := q.Enqueue(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	enqueueFillers(t, q, ids, 200, 2, 5)
	waitFor(t, "only the stuck message left", func() bool { return q.Stats().Messages == 1 && q.Stats().Inflight == 0 })
	q.Close(context.Background())
	seqs, _ := listSegments(dir)
	if len(seqs) > 8 {
		t.Errorf("%d journal segments remain; the stuck message pins old segments", len(seqs))
	}
	second := newRecorder(nil)
	q2 := opened(t, cfg, second)
	if s := q2.Stats(); s.Messages != 1 || s.Recipients != 1 {
		t.Fatalf("after collection recovered %+v, want the stuck message", s)
	}
	// The stuck message was re-written at the journal head so the old
	// segments could go: it must still deliver, with its whole content.
	q2.Start()
	q2.Flush("", "")
	waitFor(t, "the stuck message after restart", func() bool { return q2.Stats().Messages == 0 })
	if want := "List-Id: <list.example.org>\r\nSubject: hi\r\n\r\nhello\r\n"; second.bodies[stuck] != want {
		t.Errorf("relocated message delivered as %q, want %q", second.bodies[stuck], want)
	}
}

func TestGroupCommitSharesSyncs(t *testing.T) {
	t.Parallel()
	rec := newRecorder(nil)
	q := opened(t, testConfig(t.TempDir()), rec)
	ids := NewIDSource()
	var wg sync.WaitGroup
	const n = 200
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := q.Enqueue(context.Background(), testMessage(ids, 1, 1)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s := q.Stats()
	if s.Messages != n {
		t.Fatalf("queued %d, want %d", s.Messages, n)
	}
	if s.Syncs >= n {
		t.Errorf("%d fsyncs for %d concurrent messages; group commit is not batching", s.Syncs, n)
	}
	t.Logf("%d messages, %d fsyncs", n, s.Syncs)
}

// TestWriteAllAt writes more buffers than one pwritev takes.
func TestWriteAllAt(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "w"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bufs [][]byte
	var want []byte
	for i := 0; i < 2500; i++ {
		b := []byte(fmt.Sprintf("record %d;", i))
		if i%7 == 0 {
			b = nil // empty records are allowed
		}
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	if err := writeAllAt(f, bufs, 3); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(f.Name())
	if string(got[3:]) != string(want) {
		t.Errorf("wrote %d bytes, want %d matching", len(got)-3, len(want))
	}
}
