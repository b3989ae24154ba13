package queuegroups

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/testutil"

	"github.com/google/go-cmp/cmp"
)

// slotted is a deliverer with destinations: Slots gives each domain its
// own destination with slots[domain] slots (default 8), and deliveries to
// domains in hold wait until released. It records the most deliveries in
// progress per domain, and the order of attempts.
type slotted struct {
	slots   map[string]int
	hold    map[string]bool
	release chan struct{}
	rec     *recorder
	busy    testutil.InFlight // by domain

	mu    sync.Mutex
	order []string
}

func newSlotted(slots map[string]int, hold ...string) *slotted {
	s := &slotted{slots: slots, hold: map[string]bool{}, release: make(chan struct{}), rec: newRecorder(nil)}
	for _, d := range hold {
		s.hold[d] = true
	}
	return s
}

func (s *slotted) Slots(domain string) (string, int) {
	if n, ok := s.slots[domain]; ok {
		return "dest:" + domain, n
	}
	return "dest:" + domain, 8
}

// SlotsChanged never fires: these slots never change.
func (s *slotted) SlotsChanged() <-chan struct{} { return nil }

func (s *slotted) Deliver(ctx context.Context, env envelope.Request) []envelope.Result {
	s.busy.Enter(env.Domain)
	s.mu.Lock()
	s.order = append(s.order, env.Domain)
	s.mu.Unlock()
	if s.hold[env.Domain] {
		select {
		case <-s.release:
		case <-ctx.Done():
		}
	}
	s.busy.Leave(env.Domain)
	return s.rec.Deliver(ctx, env)
}

func (s *slotted) inProgress(domain string) int { return s.busy.Now(domain) }

// TestSlotsSetEnvelopesAside: a destination with one slot gets one
// delivery at a time, however many of its envelopes are due, and the
// rest of the group's runners serve other destinations meanwhile; the
// envelopes set aside all go once it frees up.
func TestSlotsSetEnvelopesAside(t *testing.T) {
	t.Parallel()
	cfg := groupsConfig(t.TempDir())
	cfg.Groups[0].Runners = 3
	d := newSlotted(map[string]int{"a-slow.test": 1}, "a-slow.test")
	q := started(t, cfg, d)
	ids := NewIDSource()
	slow := post(ids, "slow", map[string]int{"a-slow.test": 40}) // 10 envelopes of 4
	if err := q.Enqueue(context.Background(), slow); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the slow destination's first delivery", func() bool { return d.inProgress("a-slow.test") == 1 })
	fast := post(ids, "fast", map[string]int{"a-fast.test": 6})
	if err := q.Enqueue(context.Background(), fast); err != nil {
		t.Fatal(err)
	}
	delivered := func(m *Message) int {
		n := 0
		for _, e := range m.Parts[0].Envelopes {
			for _, r := range e.Recipients {
				n += d.rec.count(r)
			}
		}
		return n
	}
	waitFor(t, "the fast post, behind 10 envelopes of a held destination", func() bool { return delivered(fast) == 6 })
	if got := q.Stats().Inflight; got != 1 {
		t.Errorf("deliveries in progress with the fast post done = %d, want 1 (the held one); the rest were set aside", got)
	}
	// The nine set aside are their slots alone: a fan-out's cursor sets
	// aside most of a busy domain's envelopes, and a state for each
	// made the peak memory grow with the list.
	if got, parked := envelopeStates(q, slow.ID); got != 1 || parked != 9 {
		t.Errorf("slow post: %d envelope states and %d parked slots, want 1 (the one in progress) and 9", got, parked)
	}
	close(d.release)
	waitFor(t, "the slow post", func() bool { return delivered(slow) == 40 })
	if d.busy.Peak("a-slow.test") != 1 {
		t.Errorf("most deliveries at once to a one-slot destination = %d, want 1", d.busy.Peak("a-slow.test"))
	}
}

// envelopeStates returns how many envelopes of message id have an
// envState, and how many are parked slots without one.
func envelopeStates(q *Queue, id string) (states, parked int) {
	for _, g := range q.order {
		g.mu.Lock()
		for _, d := range g.dirs {
			if m := d.msgs[id]; m != nil {
				states += len(m.touched)
				for _, s := range m.slots {
					if s.state == slotParked {
						parked++
					}
				}
			}
		}
		g.mu.Unlock()
	}
	return states, parked
}

// TestOutcomeRetryAfter: when each deferred recipient is tried again,
// and which deferrals count as attempts.
func TestOutcomeRetryAfter(t *testing.T) {
	t.Parallel()
	const minAge = 2 * time.Second
	g := newGroup(GroupConfig{Name: DefaultGroup, MinQueueAge: minAge},
		retryPolicy{min: 5 * time.Minute, max: time.Hour, queueReturn: 24 * time.Hour}, 3, SafeTrue, nil, slog.New(slog.DiscardHandler))
	deferred := func(code int, after time.Duration) envelope.Result {
		return envelope.Result{Status: envelope.Deferred, Reply: envelope.Reply{Code: code}, RetryAfter: after}
	}
	delivered := envelope.Result{Status: envelope.Delivered, Reply: envelope.Reply{Code: 250}}
	tests := []struct {
		name         string
		results      []envelope.Result
		wantNext     time.Duration // ±10% for the backoff's jitter
		wantAttempts int           // after an envelope that had 1
	}{
		{"backoff", []envelope.Result{deferred(451, 0)}, 10 * time.Minute, 2},
		{"greylisted: its retry, counted", []envelope.Result{deferred(451, 40*time.Second)}, 40 * time.Second, 2},
		{"throttled: not before min_queue_age", []envelope.Result{deferred(421, time.Second)}, minAge, 2},
		{"busy: no attempt, no min_queue_age", []envelope.Result{deferred(0, time.Second)}, time.Second, 1},
		{"the soonest recipient decides", []envelope.Result{deferred(451, 0), deferred(451, 40*time.Second)}, 40 * time.Second, 2},
		{"a verdict makes it an attempt", []envelope.Result{delivered, deferred(0, time.Second)}, time.Second, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			m := &msgState{id: "Q", received: now}
			e := &envState{msg: m, attempts: 1}
			idx := make([]int, len(tt.results))
			for i := range idx {
				idx[i] = i
			}
			u := g.outcome(e, 1, idx, tt.results, now)
			got := u.next.Sub(now)
			if got < tt.wantNext*9/10 || got > tt.wantNext*11/10 {
				t.Errorf("next attempt in %v, want %v", got, tt.wantNext)
			}
			if u.attempts != tt.wantAttempts {
				t.Errorf("attempts = %d, want %d", u.attempts, tt.wantAttempts)
			}
		})
	}
}

// TestBiggestDomainFirst: a post's fresh envelopes are taken by the
// size of their domain, biggest first, each domain's in the order
// written, whatever order the domains were written in; with one
// delivery at a time, that is the order of the attempts.
func TestBiggestDomainFirst(t *testing.T) {
	t.Parallel()
	cfg := groupsConfig(t.TempDir())
	cfg.Groups[0].Runners = 1
	cfg.MaxQueueChildren = 1
	d := newSlotted(nil)
	q := opened(t, cfg, d)
	ids := NewIDSource()
	m := &Message{ID: ids.Next(), Received: time.Now(), Body: envelope.Bytes("Subject: hi\r\n\r\nhello\r\n")}
	var p Part
	for _, dom := range []struct {
		name   string
		rcpts  int
		chunks int
	}{{"a-small.test", 1, 1}, {"a-mid.test", 8, 2}, {"a-one.test", 2, 1}, {"a-big.test", 12, 3}} {
		for c := range dom.chunks {
			var rcpts []string
			for i := range dom.rcpts / dom.chunks {
				rcpts = append(rcpts, fmt.Sprintf("u%d-%d@%s", c, i, dom.name))
			}
			p.Envelopes = append(p.Envelopes, envelope.Envelope{Sender: "owner-list@example.org", Group: DefaultGroup, Domain: dom.name, Recipients: rcpts})
		}
	}
	m.Parts = []Part{p}
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	q.Start()
	waitFor(t, "every envelope", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.order) == 7
	})
	want := []string{"a-big.test", "a-big.test", "a-big.test", "a-mid.test", "a-mid.test", "a-one.test", "a-small.test"}
	d.mu.Lock()
	defer d.mu.Unlock()
	if diff := cmp.Diff(want, d.order); diff != "" {
		t.Errorf("order of attempts (-want +got):\n%s", diff)
	}
}
