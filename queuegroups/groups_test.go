package queuegroups

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/testutil"
)

// gate is a deliverer that holds every attempt until released and tracks
// how many attempts run at once, per group (by domain prefix) and in all.
type gate struct {
	rec     *recorder
	release chan struct{}
	busy    testutil.InFlight // by group
}

func newGate() *gate {
	return &gate{rec: newRecorder(nil), release: make(chan struct{})}
}

func (g *gate) Deliver(ctx context.Context, env envelope.Request) []envelope.Result {
	key := env.Domain[:1] // test domains start with their group's letter
	g.busy.Enter(key)
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	g.busy.Leave(key)
	return g.rec.Deliver(ctx, env)
}

func (g *gate) running() int { return g.busy.All() }

// groupsConfig has the default group (domains a*), group "b" over two
// directories (domains b*), and the control group (domains c*, sent
// there explicitly as fanmail's own mail would be).
func groupsConfig(dir string) Config {
	return Config{
		Groups: []GroupConfig{
			{Name: DefaultGroup, Dirs: []string{filepath.Join(dir, "default")}, Runners: 3},
			{Name: "b", Dirs: []string{filepath.Join(dir, "b1"), filepath.Join(dir, "b2")}, Runners: 3},
			{Name: ControlGroup, Dirs: []string{filepath.Join(dir, "control")}, Runners: 1},
		},
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, QueueReturn: time.Hour,
	}
}

// post builds a message the way the expander does: envelopes routed and
// cut by route.
func post(ids *IDSource, body string, domains map[string]int) *Message {
	m := &Message{ID: ids.Next(), Received: time.Now(), Body: envelope.Bytes(body)}
	p := Part{Prefix: []byte("List-Id: <list.example.org>\r\n")}
	for domain, n := range domains {
		group, r := route(domain)
		for start := 0; start < n; start += r {
			var rcpts []string
			for i := start; i < min(start+r, n); i++ {
				rcpts = append(rcpts, fmt.Sprintf("u%d-%s@%s", i, m.ID, domain))
			}
			p.Envelopes = append(p.Envelopes, envelope.Envelope{Sender: "owner-list@example.org", Group: group, Domain: domain, Recipients: rcpts})
		}
	}
	m.Parts = []Part{p}
	return m
}

// countInDir counts how many times marker is stored in dir's journal.
func countInDir(t *testing.T, dir, marker string) int {
	t.Helper()
	n := 0
	seqs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range seqs {
		data, err := os.ReadFile(segmentPath(dir, seq))
		if err != nil {
			t.Fatal(err)
		}
		n += bytes.Count(data, []byte(marker))
	}
	return n
}

func TestSplitAcrossGroupsStoresBodyOncePerDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q := opened(t, groupsConfig(dir), newRecorder(nil))
	ids := NewIDSource()
	var bodies []string
	for i := 0; i < 4; i++ {
		body := fmt.Sprintf("Subject: post %d\r\n\r\nbody-marker-%d\r\n", i, i)
		bodies = append(bodies, fmt.Sprintf("body-marker-%d", i))
		m := post(ids, body, map[string]int{"a.test": 10, "b.test": 5, "mx.b.test": 3})
		if err := q.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	// Every post: 3 envelopes of r=4 in the default group; 3+2 of r=2 in b.
	byDir := map[string]DirSummary{}
	for _, s := range q.Summary(10, 10) {
		byDir[filepath.Base(s.Dir)] = s
	}
	if s := byDir["default"]; s.Messages != 4 || s.Envelopes != 12 || s.Recipients != 40 {
		t.Errorf("default group: %+v, want 4 messages, 12 envelopes, 40 recipients", s)
	}
	b1, b2 := byDir["b1"], byDir["b2"]
	if b1.Messages != 2 || b2.Messages != 2 {
		t.Errorf("group b spread %d/%d messages over its directories, want 2/2", b1.Messages, b2.Messages)
	}
	if b1.Envelopes+b2.Envelopes != 20 || b1.Recipients+b2.Recipients != 32 {
		t.Errorf("group b: %d envelopes, %d recipients; want 20 and 32", b1.Envelopes+b2.Envelopes, b1.Recipients+b2.Recipients)
	}
	if s := byDir["control"]; s.Messages != 0 {
		t.Errorf("control group got domain mail: %+v", s)
	}
	// One body per directory that holds the message, however many
	// envelopes share it.
	for _, marker := range bodies {
		if n := countInDir(t, filepath.Join(dir, "default"), marker); n != 1 {
			t.Errorf("%s stored %d times in the default group's directory, want 1", marker, n)
		}
		nb := countInDir(t, filepath.Join(dir, "b1"), marker) + countInDir(t, filepath.Join(dir, "b2"), marker)
		if nb != 1 {
			t.Errorf("%s stored %d times in group b, want once in one directory", marker, nb)
		}
	}
}

func TestRunnersRespectGroupAndGlobalCaps(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		children int
		wantAll  int
	}{
		{"each group at its runners", 0, 6},
		{"max_queue_children caps the sum", 4, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := groupsConfig(t.TempDir())
			cfg.MaxQueueChildren = tt.children
			g := newGate()
			q := started(t, cfg, g)
			m := post(NewIDSource(), "Subject: x\r\n\r\nx\r\n", map[string]int{"a.test": 40, "b.test": 40})
			if err := q.Enqueue(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "runners to fill up", func() bool { return g.running() == tt.wantAll })
			time.Sleep(50 * time.Millisecond) // give an over-eager runner time to show
			close(g.release)
			waitFor(t, "all delivered", func() bool { return q.Stats().Messages == 0 })
			if g.busy.Peak("a") > 3 || g.busy.Peak("b") > 3 {
				t.Errorf("peak attempts per group a=%d b=%d, want at most each group's 3 runners", g.busy.Peak("a"), g.busy.Peak("b"))
			}
			if g.busy.PeakAll() != tt.wantAll {
				t.Errorf("peak attempts over all groups %d, want %d", g.busy.PeakAll(), tt.wantAll)
			}
		})
	}
}

// TestControlGroupIsNotStarved: with every runner and the global cap busy
// on a fan-out, mail for the control group is still delivered.
func TestControlGroupIsNotStarved(t *testing.T) {
	t.Parallel()
	cfg := groupsConfig(t.TempDir())
	cfg.MaxQueueChildren = 2
	g := newGate()
	var controlDone atomic.Bool
	d := deliverFunc(func(ctx context.Context, env envelope.Request) []envelope.Result {
		if env.Domain == "c.test" {
			defer controlDone.Store(true)
			return newRecorder(nil).Deliver(ctx, env)
		}
		return g.Deliver(ctx, env)
	})
	q := started(t, cfg, d)
	defer close(g.release)
	ids := NewIDSource()
	if err := q.Enqueue(context.Background(), post(ids, "x", map[string]int{"a.test": 100})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fan-out to take every slot", func() bool { return g.running() == 2 })
	notice := &Message{ID: ids.Next(), Received: time.Now(), Body: envelope.Bytes("Subject: notice\r\n\r\n"),
		Parts: []Part{{Envelopes: []envelope.Envelope{{Sender: "", Group: ControlGroup, Domain: "c.test", Recipients: []string{"owner@c.test"}}}}}}
	if err := q.Enqueue(context.Background(), notice); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the control message", controlDone.Load)
}

type deliverFunc func(context.Context, envelope.Request) []envelope.Result

func (f deliverFunc) Deliver(ctx context.Context, env envelope.Request) []envelope.Result {
	return f(ctx, env)
}

// TestSmallPostIsNotStuckBehindFanout: runners take turns between posts,
// so a new small post starts while a big one is still queued.
func TestSmallPostIsNotStuckBehindFanout(t *testing.T) {
	t.Parallel()
	cfg := groupsConfig(t.TempDir())
	var bigLeft atomic.Int64
	rec := newRecorder(nil)
	d := deliverFunc(func(ctx context.Context, env envelope.Request) []envelope.Result {
		time.Sleep(time.Millisecond)
		return rec.Deliver(ctx, env)
	})
	q, err := Open(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	ids := NewIDSource()
	big := post(ids, "big", map[string]int{"a.test": 4000})
	small := post(ids, "small", map[string]int{"a.test": 8})
	if err := q.Enqueue(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	q.Start()
	defer q.Close(context.Background())
	if err := q.Enqueue(context.Background(), small); err != nil {
		t.Fatal(err)
	}
	smallDone := func() bool {
		for _, e := range small.Parts[0].Envelopes {
			for _, r := range e.Recipients {
				if rec.count(r) == 0 {
					return false
				}
			}
		}
		return true
	}
	waitFor(t, "the small post", smallDone)
	for _, e := range big.Parts[0].Envelopes {
		for _, r := range e.Recipients {
			if rec.count(r) == 0 {
				bigLeft.Add(1)
			}
		}
	}
	if bigLeft.Load() == 0 {
		t.Errorf("the small post finished only after the whole fan-out")
	}
	t.Logf("small post done with %d of the fan-out's 4000 recipients still to go", bigLeft.Load())
}

func TestDeliveryModes(t *testing.T) {
	t.Parallel()
	ids := NewIDSource()
	t.Run("background returns before delivery", func(t *testing.T) {
		g := newGate()
		q := started(t, groupsConfig(t.TempDir()), g)
		defer close(g.release)
		if err := q.Enqueue(context.Background(), post(ids, "x", map[string]int{"a.test": 2})); err != nil {
			t.Fatal(err)
		}
		if g.rec.total() != 0 {
			t.Errorf("background mode delivered before Enqueue returned")
		}
		waitFor(t, "delivery to start", func() bool { return g.running() == 1 })
	})
	t.Run("interactive returns after the first attempts", func(t *testing.T) {
		rec := newRecorder(nil)
		cfg := groupsConfig(t.TempDir())
		cfg.Mode = ModeInteractive
		q := started(t, cfg, rec)
		if err := q.Enqueue(context.Background(), post(ids, "x", map[string]int{"a.test": 9, "b.test": 3})); err != nil {
			t.Fatal(err)
		}
		if got := rec.total(); got != 12 {
			t.Errorf("interactive mode: %d of 12 delivered when Enqueue returned", got)
		}
	})
	t.Run("queue waits for the group's interval", func(t *testing.T) {
		rec := newRecorder(nil)
		cfg := groupsConfig(t.TempDir())
		cfg.Groups[0].Interval = 300 * time.Millisecond
		q := started(t, cfg, rec)
		m := post(ids, "x", map[string]int{"a.test": 3})
		m.Mode = ModeQueue
		start := time.Now()
		if err := q.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		if s := q.Stats(); s.Deferred != 1 {
			t.Errorf("queue mode: %+v, want the envelope waiting for the queue run", s)
		}
		waitFor(t, "the queue run", func() bool { return rec.total() == 3 })
		if waited := time.Since(start); waited < 300*time.Millisecond {
			t.Errorf("queue-only mail delivered after %v, before the 300ms interval", waited)
		}
	})
}

func TestSuperSafe(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		safe      SuperSafe
		mode      DeliveryMode
		wantSyncs func(n int64) bool
		want      string
	}{
		{"true syncs before returning", SafeTrue, ModeBackground, func(n int64) bool { return n >= 1 }, "at least 1"},
		{"false never syncs", SafeFalse, ModeBackground, func(n int64) bool { return n == 0 }, "0"},
		{"interactive in background mode is true", SafeInteractive, ModeBackground, func(n int64) bool { return n >= 1 }, "at least 1"},
		{"interactive in interactive mode syncs once, after delivery", SafeInteractive, ModeInteractive, func(n int64) bool { return n == 1 }, "exactly 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := groupsConfig(t.TempDir())
			cfg.SuperSafe, cfg.Mode = tt.safe, tt.mode
			g := newGate()
			close(g.release)
			q, err := Open(cfg, g)
			if err != nil {
				t.Fatal(err)
			}
			if tt.mode == ModeInteractive {
				q.Start()
			}
			defer q.Close(context.Background())
			if err := q.Enqueue(context.Background(), post(NewIDSource(), "x", map[string]int{"a.test": 2})); err != nil {
				t.Fatal(err)
			}
			if s := q.Stats(); !tt.wantSyncs(s.Syncs) {
				t.Errorf("%d fdatasyncs when Enqueue returned, want %s", s.Syncs, tt.want)
			}
		})
	}
}

func TestFlushAndDelete(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := groupsConfig(dir)
	cfg.RetryMin, cfg.RetryMax, cfg.QueueReturn = time.Hour, time.Hour, 24*time.Hour
	var refuse atomic.Bool
	refuse.Store(true)
	rec := newRecorder(func(string, int) envelope.Status {
		if refuse.Load() {
			return envelope.Deferred
		}
		return envelope.Delivered
	})
	q := started(t, cfg, rec)
	ids := NewIDSource()
	keep := post(ids, "keep", map[string]int{"a.test": 2, "b.test": 2})
	drop := post(ids, "drop", map[string]int{"a.test": 3})
	for _, m := range []*Message{keep, drop} {
		if err := q.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "first attempts", func() bool { return q.Stats().Deferred == 3 })
	dropped, err := q.Delete(drop.ID)
	if err != nil || dropped != 3 {
		t.Fatalf("Delete = %d, %v; want 3 pending recipients dropped", dropped, err)
	}
	if _, err := q.Show(drop.ID); err == nil {
		t.Errorf("deleted message still shown")
	}
	md, err := q.Show(keep.ID)
	if err != nil || len(md.Envelopes) != 2 {
		t.Fatalf("Show = %+v, %v", md, err)
	}
	refuse.Store(false)
	if moved, err := q.Flush("nosuchgroup", ""); err == nil {
		t.Errorf("flush of an unknown group moved %d, want an error", moved)
	}
	if moved, err := q.Flush("b", ""); err != nil || moved != 1 {
		t.Errorf("flush group b moved %d (%v), want 1", moved, err)
	}
	waitFor(t, "group b delivered", func() bool { return q.Stats().Deferred == 1 })
	if moved, err := q.Flush("", "a.test"); err != nil || moved != 1 {
		t.Errorf("flush domain a.test moved %d (%v), want 1", moved, err)
	}
	waitFor(t, "all delivered", func() bool { return q.Stats().Messages == 0 })
	q.Close(context.Background())
	for _, e := range drop.Parts[0].Envelopes {
		for _, r := range e.Recipients {
			if rec.count(r) != 0 {
				t.Errorf("deleted message delivered to %s", r)
			}
		}
	}

	// The deletion survives a restart.
	q2, err := OpenReadOnly(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close(context.Background())
	if s := q2.Stats(); s.Messages != 0 {
		t.Errorf("after restart: %+v, want an empty queue", s)
	}
}

func TestSecondServerIsLockedOut(t *testing.T) {
	t.Parallel()
	cfg := groupsConfig(t.TempDir())
	opened(t, cfg, newRecorder(nil)) // holds the directories' locks
	if q2, err := Open(cfg, newRecorder(nil)); err == nil {
		q2.Close(context.Background())
		t.Fatal("a second spool opened the same directories")
	}
	ro, err := OpenReadOnly(cfg)
	if err != nil {
		t.Fatalf("read-only replay beside a running spool: %v", err)
	}
	ro.Close(context.Background())
}
