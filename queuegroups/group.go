package queuegroups

import (
	"bytes"
	"container/heap"
	"context"
	"io"
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
	cfg       GroupConfig
	retry     retryPolicy
	deliverer Deliverer
	log       *slog.Logger
	dirs      []*dir
	turn      atomic.Uint32 // spreads new messages over dirs

	mu       sync.Mutex
	cond     *sync.Cond // signalled when work becomes ready or the group closes
	ready    readyRing
	adm      admission // deliveries per destination, and envelopes set aside
	deferred deferHeap
	inflight int
	closing  bool
	wake     chan struct{} // nudges the retry timer when the earliest deferral changes
}

func newGroup(cfg GroupConfig, retry retryPolicy, d Deliverer, log *slog.Logger) *group {
	g := &group{cfg: cfg, retry: retry, deliverer: d, log: log, wake: make(chan struct{}, 1)}
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
		heap.Push(&g.deferred, e)
		g.nudge()
		return
	}
	g.ready.push(e)
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
		if e.msg.deleted || e.pendingCount() == 0 {
			continue
		}
		if !g.admit(e) {
			continue // set aside until a delivery to its destination ends
		}
		e.inflight = true
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
	g.inflight--
	g.ready.push(e)
}

// attempted says what the queue has left to do after an attempt, once
// the group's lock is released.
type attempted int

const (
	attemptRecorded attempted = iota // nothing more
	shareFinished                    // every recipient of the share is final: settle its DSN
	stillDeferred                    // recipients wait for a retry: a delay warning may be due
)

// attempt runs one attempt of e, records every recipient's outcome and
// says what the queue should do next about e's message.
func (g *group) attempt(ctx context.Context, e *envState) (*msgState, attempted) {
	m := e.msg
	var idx []int
	var rcpts []string
	for i, s := range e.status {
		if !s.final() {
			idx = append(idx, i)
			rcpts = append(rcpts, e.rcpts[i])
		}
	}
	g.mu.Lock()
	part := m.parts[e.part]
	seg, bodyOff, bodyLen := m.seg, m.bodyOff, m.bodyLen
	attempts := e.attempts
	g.mu.Unlock()
	req := envelope.Request{
		QueueID:  m.id,
		Attempts: attempts,
		Envelope: envelope.Envelope{Sender: part.sender, Domain: e.domain, Recipients: rcpts, Group: g.cfg.Name},
		Size:     int64(len(part.prefix)) + bodyLen,
		Open: func() io.Reader {
			return io.MultiReader(bytes.NewReader(part.prefix), seg.section(bodyOff, bodyLen))
		},
	}
	results := g.deliverer.Deliver(ctx, req)
	if len(results) != len(rcpts) {
		g.log.Error("delivery returned the wrong number of results; deferring", "qid", m.id,
			"domain", e.domain, "want", len(rcpts), "got", len(results))
		results = make([]envelope.Result, len(rcpts))
		for i := range results {
			results[i] = envelope.Result{Recipient: rcpts[i], Status: envelope.Deferred, Reply: envelope.Reply{Text: "internal error"}}
		}
	}
	u := g.outcome(e, idx, results, time.Now())

	g.mu.Lock()
	deleted := m.deleted
	g.mu.Unlock()
	if !deleted {
		// Status records ride along with the next sync: losing one to a
		// power cut means a resend, never a lost recipient.
		if _, _, err := m.dir.j.append(false, false, complete(encodeStatus(u))); err != nil {
			// Nothing was recorded, so the attempt is as if it never
			// happened: try the envelope again later rather than lose
			// a recipient.
			g.log.Error("cannot record delivery status; will retry", "qid", m.id, "domain", e.domain, "err", err)
			u = &statusUpdate{id: m.id, env: e.index, attempts: e.attempts, next: time.Now().Add(g.retry.min)}
		}
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	e.inflight = false
	g.inflight--
	if !e.tried {
		e.tried = true
		if m.firstDone != nil {
			if m.untried--; m.untried == 0 {
				close(m.firstDone)
			}
		}
	}
	if m.deleted {
		return m, attemptRecorded
	}
	applyUpdate(e, u)
	if e.pendingCount() > 0 {
		heap.Push(&g.deferred, e)
		g.nudge()
		return m, stillDeferred
	}
	m.pending--
	if m.pending > 0 {
		return m, attemptRecorded
	}
	g.finish(m)
	return m, shareFinished
}

// finish retires a share whose recipients are all final: at once if it
// owes no DSN, else it waits (done) until the queue has sent the DSN for
// every share of the message. Called with g.mu held.
func (g *group) finish(m *msgState) {
	if m.failedFor() {
		m.done = true
		return
	}
	m.dir.retire(m)
	g.log.Info("message done", "qid", m.id, "group", g.cfg.Name)
}

// outcome turns one attempt's results into a status record: delivered and
// failed recipients are final, deferred ones get the next attempt time
// (backoff, at least the group's min_queue_age) or fail once the queue
// lifetime is over.
func (g *group) outcome(e *envState, idx []int, results []envelope.Result, now time.Time) *statusUpdate {
	u := &statusUpdate{id: e.msg.id, env: e.index, attempts: e.attempts + 1}
	deferred := false
	// Each deferred recipient says when it is worth trying again: the
	// backoff, or delivery's RetryAfter (a throttling, greylisting, busy
	// or suspended destination), and the envelope goes again at the
	// soonest of these. A RetryAfter with no reply code means nothing was
	// sent for the recipient: that is no attempt, so it neither grows the
	// backoff nor waits for min_queue_age.
	wait, tried := time.Duration(-1), false
	for i, r := range results {
		if r.Status != envelope.Delivered && r.Status != envelope.Failed {
			w := r.RetryAfter
			switch {
			case w > 0 && r.Code == 0:
			case w > 0:
				w, tried = max(w, g.cfg.MinQueueAge), true
			default:
				w, tried = max(backoff(e.attempts+1, g.retry.min, g.retry.max), g.cfg.MinQueueAge), true
			}
			if wait < 0 || w < wait {
				wait = w
			}
		} else {
			tried = true
		}
		ru := rcptUpdate{index: idx[i], reply: r.Reply.String()}
		switch r.Status {
		case envelope.Delivered:
			ru.status = rcptDelivered
		case envelope.Failed:
			ru.status = rcptFailed
		default:
			ru.status = rcptPending
			deferred = true
		}
		u.rcpts = append(u.rcpts, ru)
	}
	if !deferred {
		return u
	}
	if !tried {
		u.attempts = e.attempts
	}
	next := now.Add(wait)
	if !next.After(e.msg.received.Add(g.retry.queueReturn)) {
		u.next = next
		return u
	}
	for i := range u.rcpts {
		if u.rcpts[i].status == rcptPending {
			u.rcpts[i].status = rcptFailed
			u.rcpts[i].reply = "5.4.7 queue lifetime expired; last reply: " + u.rcpts[i].reply
			g.log.Warn("giving up", "qid", e.msg.id, "rcpt", e.rcpts[u.rcpts[i].index], "status", "expired")
		}
	}
	return u
}

// retryTimer moves deferred envelopes to the ready ring when they fall
// due, until the group closes or ctx ends.
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
		for g.deferred.Len() > 0 && !g.deferred[0].next.After(now) {
			e := heap.Pop(&g.deferred).(*envState)
			g.ready.push(e)
			moved = true
		}
		wait := time.Hour
		if g.deferred.Len() > 0 {
			wait = g.deferred[0].next.Sub(now)
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

// flush makes deferred envelopes due now; domain "" means all of them.
func (g *group) flush(domain string) int {
	g.mu.Lock()
	var keep deferHeap
	moved := 0
	for g.deferred.Len() > 0 {
		e := heap.Pop(&g.deferred).(*envState)
		if domain != "" && e.domain != domain {
			keep = append(keep, e)
			continue
		}
		e.next = time.Time{}
		g.ready.push(e)
		moved++
	}
	for _, e := range keep {
		heap.Push(&g.deferred, e)
	}
	g.mu.Unlock()
	g.cond.Broadcast()
	return moved
}

// recovered schedules every pending envelope that replay found in the
// group's directories, forgets finished messages that owe no DSN, and
// returns the counts and the messages that finished but may not have had
// their DSN sent.
func (g *group) recovered(now time.Time) (msgs, rcpts int, unsettled []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range g.dirs {
		for id, m := range d.msgs {
			for _, e := range m.envs {
				if n := e.pendingCount(); n > 0 {
					m.pending++
					rcpts += n
				}
			}
			if m.pending == 0 && !m.failedFor() {
				delete(d.msgs, id)
				continue
			}
			msgs++
			m.seg.live++
			if m.pending == 0 {
				m.done = true // its DSN may not have gone out
				unsettled = append(unsettled, id)
			}
			for _, e := range m.envs {
				if e.pendingCount() > 0 {
					g.schedule(e, now)
				}
			}
		}
		if !d.j.isReadOnly() {
			d.collect()
		}
	}
	return msgs, rcpts, unsettled
}
