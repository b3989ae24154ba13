package queuegroups

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"fanmail/envelope"
)

// attempted says what the queue has left to do after an attempt, once
// the group's lock is released.
type attempted int

const (
	attemptRecorded attempted = iota // nothing more
	shareFinished                    // every recipient of the share is final: settle its DSN
	stillDeferred                    // recipients wait for a retry: a delay warning may be due
	passReported                     // recipients wait, and the pass failed some: report them (settle)
)

// taken is what a runner reads, under the group's lock, to attempt e.
type taken struct {
	part             partState
	envSeg           *segment
	envOff           int64
	bodySeg          *segment
	bodyOff, bodyLen int64
	attempts         int
	idx              []int32 // the pending recipients
}

func (g *group) snapshot(e *envState) taken {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := e.msg
	slot := m.slots[e.index]
	return taken{part: m.parts[slot.part], envSeg: m.segs[slot.seg], envOff: slot.off,
		bodySeg: m.seg, bodyOff: m.bodyOff, bodyLen: m.bodyLen, attempts: e.attempts,
		idx: append([]int32(nil), e.pendingIndexes()...)}
}

// attempt runs one attempt of e, records every recipient's outcome and
// says what the queue should do next about e's message. The envelope's
// recipients are read from its record in the journal. The attempt is
// recorded as started, durably, before delivery begins: if delivery
// kills the server, the next start finds the attempt without an outcome
// and counts it as a strike against the envelope, as it does a panic,
// which the runner survives. After asideAfter strikes in a row the
// message is moved aside instead of being tried again.
func (g *group) attempt(ctx context.Context, e *envState) (*msgState, attempted) {
	m := e.msg
	t := g.snapshot(e)
	var u *statusUpdate
	rec, err := m.readEnvelope(t.envSeg, t.envOff, e.index)
	if err != nil {
		g.log.Error("cannot read an envelope from the journal; will retry", "qid", m.id, "domain", e.domain, "err", err)
		u = &statusUpdate{id: m.id, env: e.index, attempts: t.attempts, next: time.Now().Add(g.retry.min)}
	} else {
		u = g.deliverEnvelope(ctx, e, t, rec)
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
			u = &statusUpdate{id: m.id, env: e.index, attempts: t.attempts, next: time.Now().Add(g.retry.min)}
		}
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	e.inflight = false
	m.inflight--
	g.inflight--
	g.markTried(e)
	if m.deleted {
		return m, attemptRecorded
	}
	if len(e.progress) > 0 {
		m.apply(&statusUpdate{id: m.id, env: e.index, kind: attemptProgress, rcpts: e.progress})
		e.progress = nil
	}
	if m.touched[e.index] != e {
		// The transactions' records settled every recipient.
		return g.afterDone(m)
	}
	m.apply(u)
	if e.strikes >= g.asideAfter && !m.aside {
		g.moveAside(m, e)
		return m, attemptRecorded
	}
	if m.touched[e.index] == e {
		g.deferred.push(e, e.next, &e.heapIdx)
		g.nudge()
		if m.passEnded() && m.unreported() {
			return m, passReported
		}
		return m, stillDeferred
	}
	return g.afterDone(m)
}

// afterDone is what follows an envelope's last pending recipient
// settling. Called with g.mu held.
func (g *group) afterDone(m *msgState) (*msgState, attempted) {
	if m.pendingEnvs > 0 {
		if m.passEnded() && m.unreported() {
			return m, passReported
		}
		return m, attemptRecorded
	}
	g.finish(m)
	return m, shareFinished
}

// deliverEnvelope records the start of the attempt, hands the envelope
// to the deliverer and turns the results into a status update.
func (g *group) deliverEnvelope(ctx context.Context, e *envState, t taken, rec *envRecord) *statusUpdate {
	m := e.msg
	var rcpts []string
	var idx []int
	for _, i := range t.idx {
		if int(i) < len(rec.rcpts) {
			rcpts = append(rcpts, rec.rcpts[i])
			idx = append(idx, int(i))
		}
	}
	req := envelope.Request{
		QueueID:  m.id,
		Attempts: t.attempts,
		Received: m.received,
		Envelope: envelope.Envelope{Sender: t.part.sender, Domain: e.domain, Recipients: rcpts, Group: g.cfg.Name},
		Size:     t.part.copySize(t.bodyLen),
		Personal: t.part.personal,
		SMTPUTF8: m.utf8,
		Open: func() io.Reader {
			return t.part.open(t.bodyLen, func(off, n int64) io.Reader { return t.bodySeg.section(t.bodyOff+off, n) })
		},
	}
	// The start record is written, not synced: it is there to catch a
	// message whose delivery kills the server, and a write survives the
	// process dying. A power cut can take it, which costs one attempt's
	// count, never a recipient; waiting for the disk here would put an
	// fsync in front of every delivery.
	started := &statusUpdate{id: m.id, env: e.index, kind: attemptStarted, attempts: t.attempts + 1}
	if _, _, err := m.dir.j.append(false, false, complete(encodeStatus(started))); err != nil {
		g.log.Error("cannot record the start of an attempt; will retry", "qid", m.id, "domain", e.domain, "err", err)
		return &statusUpdate{id: m.id, env: e.index, attempts: t.attempts, next: time.Now().Add(g.retry.min)}
	}
	// Each transaction's settled recipients are recorded as soon as its
	// reply is in, before the next transaction: a crash later in the
	// attempt resends only what was on the wire.
	told := make([]bool, len(rcpts))
	var progress []rcptUpdate
	req.Progress = func(k []int, res []envelope.Result) {
		u := &statusUpdate{id: m.id, env: e.index, kind: attemptProgress, attempts: t.attempts + 1}
		for j, i := range k {
			if i < 0 || i >= len(idx) || told[i] {
				continue
			}
			told[i] = true
			st := rcptDelivered
			if res[j].Status == envelope.Failed {
				st = rcptFailed
			}
			u.rcpts = append(u.rcpts, rcptUpdate{index: idx[i], status: st, reply: res[j].Reply})
		}
		if len(u.rcpts) == 0 {
			return
		}
		if _, _, err := m.dir.j.append(false, false, complete(encodeStatus(u))); err != nil {
			g.log.Warn("cannot record a transaction's outcome; the attempt's record will", "qid", m.id, "err", err)
			for _, r := range u.rcpts {
				for i := range idx {
					if idx[i] == r.index {
						told[i] = false
					}
				}
			}
			return
		}
		progress = append(progress, u.rcpts...)
	}
	results, panicked := g.deliver(ctx, req)
	e.progress = progress
	if panicked {
		return &statusUpdate{id: m.id, env: e.index, kind: attemptPanicked, attempts: t.attempts + 1,
			next: time.Now().Add(max(backoff(t.attempts+1, g.retry.min, g.retry.max), g.cfg.MinQueueAge))}
	}
	if len(results) != len(rcpts) {
		g.log.Error("delivery returned the wrong number of results; deferring", "qid", m.id,
			"domain", e.domain, "want", len(rcpts), "got", len(results))
		results = make([]envelope.Result, len(rcpts))
		for i := range results {
			results[i] = envelope.Result{Recipient: rcpts[i], Status: envelope.Deferred, Reply: envelope.Reply{Text: "internal error"}}
		}
	}
	u := g.outcome(e, t.attempts, idx, results, time.Now())
	// What a transaction's record settled is not recorded twice.
	keep := u.rcpts[:0]
	for i, r := range u.rcpts {
		if !told[i] {
			keep = append(keep, r)
		}
	}
	u.rcpts = keep
	return u
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
	if m := e.msg; m.firstDone != nil && m.untried > 0 {
		if m.untried--; m.untried == 0 {
			close(m.firstDone)
		}
	}
}

// releaseWaiter lets an interactive Enqueue waiting on m return: m will
// have no more attempts (deleted or moved aside). Called with g.mu held.
func releaseWaiter(m *msgState) {
	if m.firstDone != nil && m.untried > 0 {
		m.untried = 0
		close(m.firstDone)
	}
}

// moveAside stops all delivery of m, whose envelope e panicked or
// crashed the server asideAfter times in a row: the message stays in
// the queue, marked, until the operator deletes it. Called with g.mu
// held; the record is written with the lock held, as at start-up, so no
// runner takes m in between.
func (g *group) moveAside(m *msgState, e *envState) {
	m.aside = true
	g.unschedule(m)
	g.log.Error("message moved aside: its delivery panicked or crashed the server too often; fanmail queue delete removes it",
		"qid", m.id, "group", g.cfg.Name, "domain", e.domain, "strikes", e.strikes)
	if _, _, err := m.dir.j.append(true, false, complete(encodeID(recAside, m.id))); err != nil {
		g.log.Error("cannot record that a message was moved aside; the next start decides again", "qid", m.id, "err", err)
	}
}

// finish retires a share whose recipients are all final: at once if it
// owes no DSN, else it waits (done) until the queue has sent it (settle).
// Called with g.mu held.
func (g *group) finish(m *msgState) {
	if m.unreported() {
		m.done = true
		return
	}
	m.dir.retire(m)
	g.log.Info("message done", "qid", m.id, "group", g.cfg.Name)
}

// outcome turns one attempt's results into a status record: delivered and
// failed recipients are final, deferred ones get the next attempt time
// (backoff or RetryAfter, at least the group's min_queue_age) or fail
// once the queue lifetime is over.
func (g *group) outcome(e *envState, attempts int, idx []int, results []envelope.Result, now time.Time) *statusUpdate {
	u := &statusUpdate{id: e.msg.id, env: e.index, attempts: attempts + 1}
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
				w, tried = max(backoff(attempts+1, g.retry.min, g.retry.max), g.cfg.MinQueueAge), true
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
		u.attempts = attempts
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
			g.log.Warn("giving up", "qid", e.msg.id, "rcpt", results[i].Recipient, "status", "expired")
			g.expired.Add(1)
		}
	}
	return u
}
