package queuegroups

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"fanmail/dsn"
	"fanmail/envelope"
)

// Delivery status notifications. Recipients that failed for good (a
// 5xx, or the queue lifetime ran out) are reported to their envelope
// sender as soon as the pass over the message that failed them ends, as
// Postfix does, not when the whole message is final: once none of a
// share's envelopes is being delivered and none is still fresh, one DSN
// per envelope sender lists every failed recipient of the share not
// reported before. Later failures of the same message get a DSN of
// their own. A reported record (recReported, synced) names the
// recipients each DSN covered, so none is reported twice, across a
// restart too; only a crash between the DSN's enqueue and that record
// sends them again, never none. Once a share is final and reported it
// is retired with a delete record. After queuewarn a message still
// deferred gets one delay warning per share. DSNs travel through the
// control group with the null sender, so they never cause DSNs
// themselves, and never go to a null sender. `fanmail queue delete`
// reports nothing: the operator removed the mail on purpose.

// settle reports the failed recipients of message id that no DSN named
// yet, in every group's share of it, and retires the shares that are
// final. It runs after an attempt ends a pass over a share (passEnded),
// when a share is final, and at start for shares recovered with
// something owed.
func (q *Queue) settle(id string) {
	q.bounceMu.Lock()
	defer q.bounceMu.Unlock()
	for _, g := range q.order {
		g.mu.Lock()
		d, m := g.share(id)
		owed := m != nil && d.msgs[id] == m && !m.deleted && (m.done || m.unreported())
		done := owed && m.done
		g.mu.Unlock()
		if !owed {
			continue
		}
		if err := q.report(g, m); err != nil {
			q.log.Error("cannot queue the DSN; it is retried at the next pass or start", "qid", id, "err", err)
			continue
		}
		if !done {
			continue
		}
		if _, _, err := d.j.append(false, false, complete(encodeDelete(id))); err != nil {
			q.log.Error("cannot retire a bounced message; it is retired again after a restart", "qid", id, "err", err)
		}
		g.mu.Lock()
		if d.msgs[id] == m {
			d.retire(m)
		}
		g.mu.Unlock()
		status := "sent"
		if m.failedFor() {
			status = "bounced"
		}
		q.log.Info("message done", "qid", id, "group", g.cfg.Name, "status", status)
	}
}

// report queues the DSNs for m's failed recipients not reported yet and
// records, synced, that they are. Called with q.bounceMu held, which
// every reporter takes, so two never report the same recipient.
func (q *Queue) report(g *group, m *msgState) error {
	g.mu.Lock()
	owed := m.unreported()
	g.mu.Unlock()
	if !owed {
		return nil
	}
	covered, err := q.bounce([]heldShare{{g, m}}, dsn.Failed)
	if err != nil {
		return err
	}
	if len(covered) == 0 {
		return nil
	}
	if _, _, err := m.dir.j.append(true, false, complete(encodeReported(m.id, covered))); err != nil {
		// The DSN is queued; without the record a restart sends it again.
		q.log.Error("cannot record the recipients a DSN reported; a restart may report them again", "qid", m.id, "err", err)
	}
	g.mu.Lock()
	m.markReported(covered)
	g.mu.Unlock()
	return nil
}

// heldShare is one group's share of a message.
type heldShare struct {
	g *group
	m *msgState
}

// passEnded reports whether an attempt of m just ended a pass over it:
// no envelope of it is being delivered and none waits fresh. Called
// with g.mu held.
func (m *msgState) passEnded() bool { return m.inflight == 0 && m.fresh == 0 }

// warnDelayed sends the delay warning for m, g's share of a message, if
// it is due: the message is older than queuewarn, still has deferred
// recipients and was not warned yet.
func (q *Queue) warnDelayed(g *group, m *msgState, now time.Time) {
	if q.cfg.QueueWarn <= 0 || now.Sub(m.received) < q.cfg.QueueWarn {
		return
	}
	g.mu.Lock()
	if m.warned || m.deleted {
		g.mu.Unlock()
		return
	}
	m.warned = true
	g.mu.Unlock()
	if _, err := q.bounce([]heldShare{{g, m}}, dsn.Delayed); err != nil {
		q.log.Error("cannot queue the delay warning", "qid", m.id, "err", err)
		return
	}
	if _, _, err := m.dir.j.append(false, false, complete(encodeID(recWarned, m.id))); err != nil {
		q.log.Warn("cannot record the delay warning; it may be sent again after a restart", "qid", m.id, "err", err)
	}
}

// bounce composes and queues one DSN per envelope sender over shares,
// reporting recipients in the given state: failed ones for dsn.Failed,
// deferred ones for dsn.Delayed.
//
// For dsn.Failed it leaves out the recipients a DSN reported before and
// returns those it reported now, for the caller to record.
func (q *Queue) bounce(shares []heldShare, action dsn.Action) ([]rcptRef, error) {
	type report struct {
		sender string
		rcpts  []dsn.Recipient
		header []byte
	}
	var order []string
	bySender := map[string]*report{}
	first := shares[0].m
	expires := first.received.Add(q.cfg.QueueReturn)
	want := rcptFailed
	if action == dsn.Delayed {
		want = rcptPending
	}
	var covered []rcptRef
	for _, sh := range shares {
		g, m := sh.g, sh.m
		g.mu.Lock()
		v := m.view()
		seg, off, n := m.seg, m.bodyOff, m.bodyLen
		g.mu.Unlock()
		states, err := v.states(func(s rcptStatus) bool { return s == want })
		if err != nil {
			return nil, fmt.Errorf("read the replies of %s: %w", m.id, err)
		}
		var reported map[rcptRef]bool
		if action == dsn.Failed {
			if reported, err = v.reported(); err != nil {
				return nil, fmt.Errorf("read the reported recipients of %s: %w", m.id, err)
			}
		}
		envs := make([]int, 0, len(states))
		for i := range states {
			envs = append(envs, i)
		}
		slices.Sort(envs)
		for _, i := range envs {
			if i >= len(v.envs) || len(states[i]) == 0 {
				continue
			}
			r, err := readEnvelopeOf(v.id, v.envs[i].seg, v.envs[i].off, i)
			if err != nil {
				return nil, fmt.Errorf("read the recipients of %s: %w", m.id, err)
			}
			sender := v.parts[r.part].sender
			if !dsn.Wanted(sender) {
				continue
			}
			idx := make([]int, 0, len(states[i]))
			for k := range states[i] {
				idx = append(idx, k)
			}
			slices.Sort(idx)
			for _, k := range idx {
				if k >= len(r.rcpts) || reported[rcptRef{i, k}] {
					continue
				}
				if action == dsn.Failed {
					covered = append(covered, rcptRef{i, k})
				}
				rep := bySender[sender]
				if rep == nil {
					rep = &report{sender: sender}
					bySender[sender] = rep
					order = append(order, sender)
				}
				rc := dsn.Recipient{FinalRecipient: r.rcpts[k], Action: action, Reply: states[i][k].reply}
				if action == dsn.Delayed {
					rc.WillRetryUntil = expires
				}
				rep.rcpts = append(rep.rcpts, rc)
			}
		}
		for _, rep := range bySender {
			if rep.header == nil {
				h, err := dsn.HeaderOf(io.NewSectionReader(seg.file, off, n))
				if err != nil {
					return nil, fmt.Errorf("read original header: %w", err)
				}
				rep.header = h
			}
		}
	}
	for _, sender := range order {
		rep := bySender[sender]
		body, err := dsn.Compose(dsn.Report{ReportingMTA: q.cfg.Hostname, To: sender,
			ArrivalDate: first.received, Header: rep.header, Recipients: rep.rcpts})
		if err != nil {
			return nil, err
		}
		at := strings.LastIndexByte(sender, '@')
		if at < 0 {
			q.log.Warn("no DSN for an envelope sender without a domain", "qid", first.id, "sender", sender)
			continue
		}
		msg := &Message{ID: q.ids.Next(), Received: time.Now(), Body: envelope.Bytes(body), Parts: []Part{{
			Envelopes: []envelope.Envelope{{Sender: "", Group: ControlGroup, Domain: strings.ToLower(sender[at+1:]),
				Recipients: []string{sender}}},
		}}}
		if err := q.Enqueue(q.runCtx, msg); err != nil {
			return nil, err
		}
		q.log.Info("dsn queued", "qid", msg.ID, "orig_qid", first.id, "to", sender,
			"action", string(action), "rcpts", len(rep.rcpts))
	}
	return covered, nil
}
