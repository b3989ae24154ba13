package queuegroups

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"fanmail/envelope"
)

// GroupConfig is one queue group, sendmail's QUEUE_GROUP.
type GroupConfig struct {
	Name        string
	Dirs        []string      // P=: one per disk; envelopes are spread over them
	Runners     int           // R=: deliveries in progress at once
	Interval    time.Duration // I=: the queue run interval, for queue-only mail
	MinQueueAge time.Duration // MinQueueAge: no retry sooner than this after an attempt
}

// Deliverer is what a group hands envelopes to; *delivery.Agent is one.
type Deliverer interface {
	Deliver(ctx context.Context, req envelope.Request) []envelope.Result
}

// retryPolicy is how a group reschedules deferred recipients: the
// backoff bounds and the queue lifetime (sendmail Timeout.queuereturn).
type retryPolicy struct {
	min, max    time.Duration
	queueReturn time.Duration
}

// group is one queue group: its directories, its schedule (due envelopes
// round-robin across messages, deferred ones by time), the attempts its
// runners make and its retry timer. One mutex guards the schedule and
// every directory's message state; journal writes happen outside it.
type group struct {
	cfg        GroupConfig
	retry      retryPolicy
	asideAfter int // strikes in a row (panics, crashes) that move a message aside
	safe       SuperSafe
	deliverer  Deliverer
	log        *slog.Logger
	dirs       []*dir
	turn       atomic.Uint32 // spreads new messages over dirs
	expired    atomic.Int64  // recipients given up on at the queue lifetime since start

	mu       sync.Mutex
	cond     *sync.Cond // signalled when work becomes ready or the group closes
	ready    readyRing
	adm      admission // deliveries per destination, and envelopes set aside
	deferred timeHeap[*envState]
	held     timeHeap[*msgState] // queue-only messages waiting for the interval
	inflight int
	closing  bool
	wake     chan struct{} // nudges the retry timer when the earliest deferral changes
}

func newGroup(cfg GroupConfig, retry retryPolicy, asideAfter int, safe SuperSafe, d Deliverer, log *slog.Logger) *group {
	g := &group{cfg: cfg, retry: retry, asideAfter: asideAfter, safe: safe, deliverer: d, log: log, wake: make(chan struct{}, 1)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// share returns the directory holding message id in this group and its
// state there, or nil. Called with g.mu held.
func (g *group) share(id string) (*dir, *msgState) {
	for _, d := range g.dirs {
		if m := d.msgs[id]; m != nil {
			return d, m
		}
	}
	return nil, nil
}

// pickDir chooses the directory for a new message, in turn.
func (g *group) pickDir() *dir {
	return g.dirs[int(g.turn.Add(1))%len(g.dirs)]
}

// schedule makes e due now or at e.next. Called with g.mu held.
func (g *group) schedule(e *envState, now time.Time) {
	if e.next.After(now) {
		g.deferred.push(e, e.next, &e.heapIdx)
		g.nudge()
		return
	}
	g.ready.push(e)
}

// scheduleFresh makes m's fresh envelopes due now, or at m.holdUntil.
// Called with g.mu held.
func (g *group) scheduleFresh(m *msgState, now time.Time) {
	if m.fresh == 0 {
		return
	}
	if m.holdUntil.After(now) {
		g.held.push(m, m.holdUntil, &m.holdIdx)
		g.nudge()
		return
	}
	g.ready.pushFresh(m)
}

// unschedule stops every scheduled attempt of m, which will have none
// (deleted or moved aside), and lets an interactive Enqueue waiting on it
// return. Called with g.mu held.
func (g *group) unschedule(m *msgState) {
	for _, e := range m.touched {
		g.deferred.remove(&e.heapIdx)
	}
	g.held.remove(&m.holdIdx)
	releaseWaiter(m)
}

// nudge wakes the retry timer; called with g.mu held.
func (g *group) nudge() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// take blocks until an envelope is due and admitted, or the group
// closes (nil).
func (g *group) take() *envState {
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		for g.ready.empty() && !g.closing {
			g.cond.Wait()
		}
		if g.closing {
			return nil
		}
		e := g.ready.pop()
		if e == nil {
			continue
		}
		if e.msg.deleted || e.msg.aside || e.pendingCount() == 0 {
			g.markTried(e)
			continue
		}
		if !g.admit(e) {
			continue // set aside until a delivery to its destination ends
		}
		e.inflight = true
		e.msg.inflight++
		g.inflight++
		return e
	}
}

// putBack returns an envelope taken but not attempted (shutdown).
func (g *group) putBack(e *envState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.unadmit(e.domain)
	e.inflight = false
	e.msg.inflight--
	g.inflight--
	g.ready.push(e)
}

// retryTimer moves deferred envelopes, and queue-only messages, to the
// ready ring when they fall due, until the group closes or ctx ends.
func (g *group) retryTimer(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		g.mu.Lock()
		if g.closing {
			g.mu.Unlock()
			return
		}
		now := time.Now()
		moved := false
		for e, ok := g.deferred.popDue(now); ok; e, ok = g.deferred.popDue(now) {
			g.ready.push(e)
			moved = true
		}
		for m, ok := g.held.popDue(now); ok; m, ok = g.held.popDue(now) {
			g.ready.pushFresh(m)
			moved = true
		}
		wait := time.Hour
		if g.deferred.Len() > 0 {
			wait = g.deferred.first().Sub(now)
		}
		if g.held.Len() > 0 {
			wait = min(wait, g.held.first().Sub(now))
		}
		g.mu.Unlock()
		if moved {
			g.cond.Broadcast()
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-g.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// flush makes deferred envelopes due now; domain "" means all of them,
// and then queue-only messages waiting for the interval too. Messages
// moved aside stay where they are.
func (g *group) flush(domain string) int {
	g.mu.Lock()
	var keep []*envState
	moved := 0
	for g.deferred.Len() > 0 {
		e := g.deferred.pop()
		if e.msg.aside {
			continue
		}
		if domain != "" && e.domain != domain {
			keep = append(keep, e)
			continue
		}
		e.next = time.Time{}
		g.ready.push(e)
		moved++
	}
	for _, e := range keep {
		g.deferred.push(e, e.next, &e.heapIdx)
	}
	if domain == "" {
		for g.held.Len() > 0 {
			m := g.held.pop()
			moved += m.fresh
			g.ready.pushFresh(m)
		}
	}
	g.mu.Unlock()
	g.cond.Broadcast()
	return moved
}

// recovered schedules every pending envelope that replay found in the
// group's directories, forgets finished messages that owe no DSN, and
// returns the counts and the messages with failed recipients no DSN
// reported yet.
func (g *group) recovered(now time.Time) (msgs, rcpts, aside int, unsettled []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range g.dirs {
		for id, m := range d.msgs {
			m.intern = nil // no more envelopes
			if m.pendingEnvs == 0 && !m.unreported() {
				delete(d.msgs, id)
				continue
			}
			msgs++
			rcpts += m.pendingRcpts
			m.seg.live++
			if m.pendingEnvs == 0 {
				m.done = true // its DSN may not have gone out
				unsettled = append(unsettled, id)
				continue
			}
			if m.unreported() {
				// Failed in a pass the server did not live to report.
				unsettled = append(unsettled, id)
			}
			for _, e := range m.touched {
				if e.open {
					// Recorded as started, never finished: the server
					// died during it.
					e.open = false
					e.strikes++
				}
				if e.strikes >= g.asideAfter && !m.aside {
					m.aside = true
					g.log.Error("message moved aside: its delivery panicked or crashed the server too often; fanmail queue delete removes it",
						"qid", m.id, "group", g.cfg.Name, "domain", e.domain, "strikes", e.strikes)
				}
			}
			if m.aside {
				aside++
				continue
			}
			for _, e := range m.touched {
				g.schedule(e, now)
			}
			g.scheduleFresh(m, now)
		}
		if !d.j.isReadOnly() {
			d.collect()
		}
	}
	return msgs, rcpts, aside, unsettled
}
