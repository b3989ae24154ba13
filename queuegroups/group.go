package queuegroups

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
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

	mu       sync.Mutex
	cond     *sync.Cond // signalled when work becomes ready or the group closes
	ready    readyRing
	adm      admission // deliveries per destination, and envelopes set aside
	deferred deferHeap
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
		if e.msg.deleted || e.msg.aside || e.pendingCount() == 0 {
			g.markTried(e)
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
// says what the queue should do next about e's message. The attempt is
// recorded as started, durably, before delivery begins: if delivery
// kills the server, the next start finds the attempt without an outcome
// and counts it as a strike against the envelope, as it does a panic,
// which the runner survives. After asideAfter strikes in a row the
// message is moved aside instead of being tried again.
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
		Received: m.received,
		Envelope: envelope.Envelope{Sender: part.sender, Domain: e.domain, Recipients: rcpts, Group: g.cfg.Name},
		Size:     int64(len(part.prefix)) + bodyLen,
		Open: func() io.Reader {
			return io.MultiReader(bytes.NewReader(part.prefix), seg.section(bodyOff, bodyLen))
		},
	}
	started := &statusUpdate{id: m.id, env: e.index, kind: attemptStarted, attempts: attempts + 1}
	var u *statusUpdate
	if _, _, err := m.dir.j.append(g.syncStart(e), false, complete(encodeStatus(started))); err != nil {
		g.log.Error("cannot record the start of an attempt; will retry", "qid", m.id, "domain", e.domain, "err", err)
		u = &statusUpdate{id: m.id, env: e.index, attempts: attempts, next: time.Now().Add(g.retry.min)}
	} else if results, panicked := g.deliver(ctx, req); panicked {
		u = &statusUpdate{id: m.id, env: e.index, kind: attemptPanicked, attempts: attempts + 1,
			next: time.Now().Add(max(backoff(attempts+1, g.retry.min, g.retry.max), g.cfg.MinQueueAge))}
	} else {
		if len(results) != len(rcpts) {
			g.log.Error("delivery returned the wrong number of results; deferring", "qid", m.id,
				"domain", e.domain, "want", len(rcpts), "got", len(results))
			results = make([]envelope.Result, len(rcpts))
			for i := range results {
				results[i] = envelope.Result{Recipient: rcpts[i], Status: envelope.Deferred, Reply: envelope.Reply{Text: "internal error"}}
			}
		}
		u = g.outcome(e, idx, results, time.Now())
	}

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
	g.markTried(e)
	if m.deleted {
		return m, attemptRecorded
	}
	applyUpdate(e, u)
	if e.strikes >= g.asideAfter && !m.aside {
		g.moveAside(m, e)
		return m, attemptRecorded
	}
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

// syncStart says whether the record of an attempt's start waits for the
// disk: as SuperSafe says for the message, so never with SafeFalse, and
// not for the first attempt of an interactive post with SafeInteractive,
// whose client still waits. Written without a sync it still survives
// the server dying, which is what it is there for; only a power cut can
// take it.
func (g *group) syncStart(e *envState) bool {
	switch g.safe {
	case SafeFalse:
		return false
	case SafeInteractive:
		g.mu.Lock()
		defer g.mu.Unlock()
		return e.msg.firstDone == nil || e.tried
	}
	return true
}

// deliver hands req to the deliverer and turns a panic into a log line
// with the stack, so one poisonous message cannot take the server down.
func (g *group) deliver(ctx context.Context, req envelope.Request) (results []envelope.Result, panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			g.log.Error("delivery panicked; the envelope stays queued", "qid", req.QueueID, "domain", req.Domain,
				"group", g.cfg.Name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			results, panicked = nil, true
		}
	}()
	return g.deliverer.Deliver(ctx, req), false
}

// markTried notes e's first attempt in this process (or that it will
// have none) for an interactive Enqueue waiting on it. Called with g.mu
// held.
func (g *group) markTried(e *envState) {
	if e.tried {
		return
	}
	e.tried = true
	if m := e.msg; m.firstDone != nil {
		if m.untried--; m.untried == 0 {
			close(m.firstDone)
		}
	}
}

// moveAside stops all delivery of m, whose envelope e panicked or
// crashed the server asideAfter times in a row: the message stays in
// the queue, marked, until the operator deletes it. Called with g.mu
// held; the record is written with the lock held, as at start-up, so no
// runner takes m in between.
func (g *group) moveAside(m *msgState, e *envState) {
	m.aside = true
	for _, x := range m.envs {
		if x.heapIdx >= 0 {
			heap.Remove(&g.deferred, x.heapIdx)
		}
	}
	g.log.Error("message moved aside: its delivery panicked or crashed the server too often; fanmail queue delete removes it",
		"qid", m.id, "group", g.cfg.Name, "domain", e.domain, "strikes", e.strikes)
	if _, _, err := m.dir.j.append(true, false, complete(encodeID(recAside, m.id))); err != nil {
		g.log.Error("cannot record that a message was moved aside; the next start decides again", "qid", m.id, "err", err)
	}
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
		ru := rcptUpdate{index: idx[i], reply: r.Reply}
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
			last := u.rcpts[i].reply
			u.rcpts[i].reply = envelope.Reply{Enhanced: "5.4.7", Text: "queue lifetime expired; last reply: " + last.String(), Host: last.Host}
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
		if e.msg.aside {
			continue // moved aside: never retried, by flush or otherwise
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
func (g *group) recovered(now time.Time) (msgs, rcpts, aside int, unsettled []string) {
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
				if e.open {
					// Recorded as started, never finished: the server
					// died during it.
					e.open = false
					e.strikes++
				}
				if e.strikes >= g.asideAfter && e.pendingCount() > 0 && !m.aside {
					m.aside = true
					g.log.Error("message moved aside: its delivery panicked or crashed the server too often; fanmail queue delete removes it",
						"qid", m.id, "group", g.cfg.Name, "domain", e.domain, "strikes", e.strikes)
				}
			}
			if m.aside {
				aside++
				continue
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
	return msgs, rcpts, aside, unsettled
}
