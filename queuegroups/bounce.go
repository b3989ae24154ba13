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

// Delivery status notifications. When every recipient of a message is
// final and some failed (a 5xx, or the queue lifetime ran out), one DSN
// per envelope sender goes to that sender, listing every failed
// recipient of the message over all the groups it was split across. A
// share that finishes first is kept, marked done, until the last share
// finishes; a delete record then retires them all, after the DSN is
// queued, so a crash in between sends the DSN again rather than never.
// After queuewarn a message still deferred gets one delay warning per
// share. DSNs travel through the control group with the null sender, so
// they never cause DSNs themselves, and never go to a null sender.

// settle sends the DSNs for message id once no share of it is pending,
// then retires its done shares.
func (q *Queue) settle(id string) {
	q.bounceMu.Lock()
	defer q.bounceMu.Unlock()
	var done []heldShare
	for _, g := range q.order {
		g.mu.Lock()
		_, m := g.share(id)
		waiting := m != nil && !m.done
		g.mu.Unlock()
		switch {
		case waiting:
			return // a later finish settles it
		case m != nil:
			done = append(done, heldShare{g, m})
		}
	}
	if len(done) == 0 {
		return
	}
	if err := q.bounce(done, dsn.Failed); err != nil {
		q.log.Error("cannot queue the DSN; it is retried at the next start", "qid", id, "err", err)
		return
	}
	for _, h := range done {
		d := h.m.dir
		if _, _, err := d.j.append(false, false, complete(encodeDelete(id))); err != nil {
			q.log.Error("cannot retire a bounced message; its DSN may be sent again after a restart", "qid", id, "err", err)
		}
		h.g.mu.Lock()
		if d.msgs[id] == h.m {
			d.retire(h.m)
		}
		h.g.mu.Unlock()
		q.log.Info("message done", "qid", id, "group", h.g.cfg.Name, "status", "bounced")
	}
}

// heldShare is one group's share of a message.
type heldShare struct {
	g *group
	m *msgState
}

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
	if err := q.bounce([]heldShare{{g, m}}, dsn.Delayed); err != nil {
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
func (q *Queue) bounce(shares []heldShare, action dsn.Action) error {
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
	for _, sh := range shares {
		g, m := sh.g, sh.m
		g.mu.Lock()
		v := m.view()
		seg, off, n := m.seg, m.bodyOff, m.bodyLen
		g.mu.Unlock()
		states, err := v.states(func(s rcptStatus) bool { return s == want })
		if err != nil {
			return fmt.Errorf("read the replies of %s: %w", m.id, err)
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
				return fmt.Errorf("read the recipients of %s: %w", m.id, err)
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
				if k >= len(r.rcpts) {
					continue
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
					return fmt.Errorf("read original header: %w", err)
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
			return err
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
			return err
		}
		q.log.Info("dsn queued", "qid", msg.ID, "orig_qid", first.id, "to", sender,
			"action", string(action), "rcpts", len(rep.rcpts))
	}
	return nil
}
