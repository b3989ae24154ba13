package queuegroups

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/testutil"
)

// textLogger logs to b as text, for a test to read back.
func textLogger(b *testutil.SyncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// TestCorruptRecordIsSkippedAndQuarantined flips one byte in the first of
// three queued messages: after a restart the other two are recovered
// and delivered, the bad record's bytes are in a quarantine file, and
// the log names the message it held.
func TestCorruptRecordIsSkippedAndQuarantined(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(dir)
	q := opened(t, cfg, newRecorder(nil))
	ids := NewIDSource()
	var msgs []*Message
	for i := range 3 {
		m := testMessage(ids, 1, 2)
		m.Body = envelope.Bytes(strings.Repeat("line of the body "+string(rune('a'+i))+"\r\n", 50))
		if err := q.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	q.Close(context.Background())

	seqs, _ := listSegments(dir)
	path := segmentPath(dir, seqs[0])
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte("line of the body a")) + 5
	data[at] ^= 0x20
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}

	var log testutil.SyncBuffer
	cfg.Logger = textLogger(&log)
	rec := newRecorder(nil)
	q2 := started(t, cfg, rec)
	waitFor(t, "the two intact messages", func() bool { return rec.total() == 4 })
	for i, m := range msgs {
		want := 1
		if i == 0 {
			want = 0
		}
		for _, r := range m.Parts[0].Envelopes[0].Recipients {
			if got := rec.count(r); got != want {
				t.Errorf("message %d: %s delivered %d times, want %d", i, r, got, want)
			}
		}
	}
	// The recorder counts a delivery before the queue records its
	// outcome; the message is gone once that is on disk.
	waitFor(t, "the delivered messages to leave the queue", func() bool { return q2.Stats().Messages == 0 })
	quarantined, _ := filepath.Glob(path + ".*.quarantine")
	if len(quarantined) != 1 {
		t.Fatalf("quarantine files %v, want one", quarantined)
	}
	bad, _ := os.ReadFile(quarantined[0])
	if !bytes.Contains(bad, []byte(msgs[0].ID)) || !bytes.Contains(bad, []byte("line of the body a")[:5]) {
		t.Errorf("quarantine file holds %d bytes without the bad record", len(bad))
	}
	if bytes.Contains(bad, []byte(msgs[1].ID)) {
		t.Errorf("quarantine file holds the next, intact record too")
	}
	if l := log.String(); !strings.Contains(l, "unreadable bytes skipped") || !strings.Contains(l, msgs[0].ID) {
		t.Errorf("log does not report the damage with the message's ID:\n%s", l)
	}
	// The segment with the damage is still collected once its readable
	// messages are done; the quarantine file stays.
	q2.Close(context.Background())
	if _, err := os.Stat(quarantined[0]); err != nil {
		t.Errorf("quarantine file gone: %v", err)
	}
}

// TestRepliesSurviveRelocationAndRestart: a recipient refused with 5xx
// while another is deferred is reported at once with its reply (code,
// enhanced code, text, host), keeps it through a rewrite of the message
// at the journal head and a restart (queue show), and is not reported
// again by the DSN for the other, which fails after the restart.
func TestRepliesSurviveRelocationAndRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.SegmentSize = 4 << 10
	cfg.RetryMin, cfg.RetryMax, cfg.QueueReturn = time.Hour, time.Hour, 24*time.Hour
	cfg.QueueWarn = 0
	ids := NewIDSource()
	m := testMessage(ids, 2, 1)
	m.Parts[0].Envelopes[0].Sender = "owner-list@example.org"
	gone, later := m.Parts[0].Envelopes[0].Recipients[0], m.Parts[0].Envelopes[1].Recipients[0]
	rule := func(d *replyRecorder, rcpt string) (envelope.Status, envelope.Reply) {
		switch rcpt {
		case gone:
			return envelope.Failed, envelope.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user here", Host: "mx.d0.test"}
		case later:
			if d.expire {
				return envelope.Failed, envelope.Reply{Code: 554, Enhanced: "5.7.1", Text: "refused at last", Host: "mx.d1.test"}
			}
			return envelope.Deferred, envelope.Reply{Code: 451, Enhanced: "4.7.1", Text: "greylisted", Host: "mx.d1.test"}
		}
		return envelope.Delivered, envelope.Reply{Code: 250, Text: "ok"}
	}
	first := &replyRecorder{rule: rule, got: map[string][]byte{}}
	q := started(t, cfg, first)
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first attempts", func() bool { return q.Stats().Deferred == 1 && q.Stats().Inflight == 0 })
	// The failure is reported when the pass that failed it ends, while
	// the other recipient is still deferred.
	waitFor(t, "the first DSN", func() bool { return len(first.body("owner-list@example.org")) > 0 })
	firstDSN := string(first.body("owner-list@example.org"))
	for _, want := range []string{"Final-Recipient: rfc822; " + gone, "Diagnostic-Code: smtp; 550 5.1.1 no such user here", "Remote-MTA: dns; mx.d0.test"} {
		if !strings.Contains(firstDSN, want) {
			t.Errorf("first DSN lacks %q:\n%s", want, firstDSN)
		}
	}
	if strings.Contains(firstDSN, later) {
		t.Errorf("first DSN names the deferred %s:\n%s", later, firstDSN)
	}
	// Fill segments until the message's own is collected by relocation.
	firstSeg, _ := listSegments(dir)
	enqueueFillers(t, q, ids, 100, 1, 1)
	waitFor(t, "the fillers", func() bool { return q.Stats().Messages == 1 && q.Stats().Inflight == 0 })
	q.Close(context.Background())
	if _, err := os.Stat(segmentPath(dir, firstSeg[0])); !os.IsNotExist(err) {
		t.Fatalf("the message's first segment is still there (%v): no relocation happened", err)
	}

	second := &replyRecorder{rule: rule, got: map[string][]byte{}, expire: true}
	q2 := started(t, cfg, second)
	md, err := q2.Show(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r := md.Envelopes[0].Recipients[0]; r.Reply != "550 5.1.1 no such user here" || r.Host != "mx.d0.test" {
		t.Errorf("after relocation and restart %s shows reply %q from %q", gone, r.Reply, r.Host)
	}
	q2.Flush("", "")
	waitFor(t, "the DSN", func() bool { return len(second.body("owner-list@example.org")) > 0 })
	dsn := string(second.body("owner-list@example.org"))
	for _, want := range []string{
		"Final-Recipient: rfc822; " + later, "Diagnostic-Code: smtp; 554 5.7.1 refused at last", "Remote-MTA: dns; mx.d1.test",
	} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	// The record that the first DSN reported gone survived the
	// relocation and the restart: it is not reported again.
	if strings.Contains(dsn, gone) {
		t.Errorf("second DSN reports %s again:\n%s", gone, dsn)
	}
}

// replyRecorder answers each recipient by rule, with a full reply, and
// keeps the last message each recipient got.
type replyRecorder struct {
	rule   func(*replyRecorder, string) (envelope.Status, envelope.Reply)
	expire bool
	mu     sync.Mutex
	got    map[string][]byte
}

func (r *replyRecorder) Deliver(_ context.Context, req envelope.Request) []envelope.Result {
	data, _ := readAll(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	var res []envelope.Result
	for _, rcpt := range req.Recipients {
		st, rp := envelope.Delivered, envelope.Reply{Code: 250}
		if r.rule != nil {
			st, rp = r.rule(r, rcpt)
		}
		if st == envelope.Delivered {
			r.got[rcpt] = data
		}
		res = append(res, envelope.Result{Recipient: rcpt, Status: st, Reply: rp})
	}
	return res
}

func (r *replyRecorder) body(rcpt string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[rcpt]
}

func readAll(req envelope.Request) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(req.Open())
	return b.Bytes(), err
}

// poisoned panics for every envelope to domain poison.test and delivers
// the rest.
type poisoned struct {
	*recorder
	mu     sync.Mutex
	panics int
}

func (p *poisoned) Deliver(ctx context.Context, req envelope.Request) []envelope.Result {
	if req.Domain == "poison.test" {
		p.mu.Lock()
		p.panics++
		p.mu.Unlock()
		panic("poisonous message")
	}
	return p.recorder.Deliver(ctx, req)
}

func (p *poisoned) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.panics
}

// TestPanicMovesMessageAside: a message whose delivery panics is retried
// until it has panicked MoveAsideAfter times in a row, then moved aside,
// while other mail flows; the state survives a restart, flush leaves it
// alone, and delete removes it.
func TestPanicMovesMessageAside(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.RetryMin, cfg.RetryMax = 10*time.Millisecond, 10*time.Millisecond
	var log testutil.SyncBuffer
	cfg.Logger = textLogger(&log)
	d := &poisoned{recorder: newRecorder(nil)}
	q := started(t, cfg, d)
	ids := NewIDSource()
	bad := testMessage(ids, 1, 1)
	bad.Parts[0].Envelopes[0].Domain = "poison.test"
	if err := q.Enqueue(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	good := testMessage(ids, 3, 2)
	if err := q.Enqueue(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message moved aside", func() bool { return q.Stats().MovedAside == 1 })
	waitFor(t, "the other mail", func() bool { return d.total() == 6 })
	time.Sleep(50 * time.Millisecond) // a fourth attempt would come now
	if n := d.count(); n != 3 {
		t.Errorf("delivery panicked %d times, want 3 (MoveAsideAfter)", n)
	}
	l := log.String()
	for _, want := range []string{"delivery panicked", "qid=" + bad.ID, "poisonous message", "stack=", "message moved aside"} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
	q.Close(context.Background())

	q2 := started(t, cfg, d)
	if s := q2.Stats(); s.MovedAside != 1 || s.Recipients != 0 {
		t.Errorf("after restart: %+v, want the message still moved aside", s)
	}
	md, err := q2.Show(bad.ID)
	if err != nil || len(md.MovedAside) != 1 || md.Envelopes[0].Strikes != 3 {
		t.Errorf("Show = %+v, %v; want moved aside in the default group after 3 strikes", md, err)
	}
	sum := q2.Summary(5, 10)
	if sum[0].MovedAside != 1 || !sum[0].List[0].MovedAside {
		t.Errorf("Summary = %+v, want the message listed as moved aside", sum[0])
	}
	if moved, _ := q2.Flush("", ""); moved != 0 {
		t.Errorf("flush made %d envelopes due, want none", moved)
	}
	time.Sleep(50 * time.Millisecond)
	if n := d.count(); n != 3 {
		t.Errorf("after restart and flush delivery panicked %d times in all, want still 3", n)
	}
	if _, err := q2.Delete(bad.ID); err != nil {
		t.Fatal(err)
	}
	if s := q2.Stats(); s.MovedAside != 0 || s.Messages != 0 {
		t.Errorf("after delete: %+v", s)
	}
}

// TestAttemptsThatDiedWithTheServerMoveAside: an attempt recorded as
// started with no outcome means the server died during it; three in a
// row move the message aside at the next start, while one followed by
// an attempt that ended does not count.
func TestAttemptsThatDiedWithTheServerMoveAside(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		events    []attemptKind
		wantAside bool
	}{
		{"three deaths in a row", []attemptKind{attemptStarted, attemptStarted, attemptStarted}, true},
		{"two deaths and a panic", []attemptKind{attemptStarted, attemptStarted, attemptStarted, attemptPanicked}, true},
		{"two deaths", []attemptKind{attemptStarted, attemptStarted}, false},
		{"an attempt that ended in between", []attemptKind{attemptStarted, attemptStarted, attemptDone, attemptStarted}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(dir)
			q, err := Open(cfg, newRecorder(nil))
			if err != nil {
				t.Fatal(err)
			}
			m := testMessage(NewIDSource(), 1, 1)
			if err := q.Enqueue(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			d := q.groups[DefaultGroup].dirs[0]
			for i, k := range tt.events {
				u := &statusUpdate{id: m.ID, kind: k, attempts: i + 1}
				if k == attemptDone {
					u.rcpts = []rcptUpdate{{index: 0, status: rcptPending, reply: envelope.Reply{Code: 451, Text: "later"}}}
				}
				if _, _, err := d.j.append(true, false, complete(encodeStatus(u))); err != nil {
					t.Fatal(err)
				}
			}
			q.Close(context.Background())
			q2 := opened(t, cfg, newRecorder(nil))
			if got := q2.Stats().MovedAside == 1; got != tt.wantAside {
				t.Errorf("moved aside %v, want %v", got, tt.wantAside)
			}
		})
	}
}
