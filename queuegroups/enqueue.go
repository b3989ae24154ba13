package queuegroups

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"fanmail/envelope"
)

// ErrNoRecipients means a message expanded to no recipient at all, so
// nothing was queued.
var ErrNoRecipients = errors.New("enqueue: message has no recipients")

// batchBytes is how many bytes of envelope records a share gathers
// before it appends them: a big fan-out is written as it is expanded,
// in batches, never held whole.
const batchBytes = 256 << 10

// share is the part of one message that goes to one group: its state in
// one of the group's directories and what is written of it so far.
type share struct {
	g     *group
	d     *dir
	ms    *msgState
	parts map[partKey]int
	body  envelope.Body

	batch    []record
	batchEnv []int // for each record of batch: the envelope index, or -1
	size     int
	written  bool       // the head is in the journal
	pinned   []*segment // segments pinned until the share is registered
	err      error
}

type partKey struct {
	part   int
	sender string
}

// Enqueue stores m durably and schedules its envelopes. Envelopes are
// split across their groups (sendmail's split across queue groups): each
// group gets a head record with the body in one of its directories, then
// a record per envelope, written in batches as the expander produces
// them, then a commit record; only the commit makes the share
// deliverable, and Enqueue returns (and the client gets its 250) once it
// is durable. A message split over several groups is committed in two
// steps, its envelopes everywhere first, so a crash leaves it whole or
// not at all. In background mode every envelope is due at once; in
// interactive mode Enqueue returns after the first attempt of every
// envelope; in queue mode envelopes wait one group interval.
func (q *Queue) Enqueue(ctx context.Context, m *Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	mode := m.Mode
	if mode == ModeDefault {
		mode = q.cfg.Mode
	}
	durable := q.cfg.SuperSafe == SafeTrue || (q.cfg.SuperSafe == SafeInteractive && mode != ModeInteractive)
	shares, err := q.write(m)
	if err != nil {
		q.undo(m.ID, shares)
		return err
	}
	if len(shares) == 0 {
		return ErrNoRecipients
	}
	if err := q.commit(shares, durable); err != nil {
		q.undo(m.ID, shares)
		return fmt.Errorf("enqueue %s: %w", m.ID, err)
	}
	m.queued = 0
	now := time.Now()
	for _, sh := range shares {
		ms, g := sh.ms, sh.g
		m.queued += ms.total
		g.mu.Lock()
		ms.intern = nil
		ms.committed = true
		if mode == ModeQueue {
			ms.holdUntil = now.Add(g.cfg.Interval)
		}
		if mode == ModeInteractive {
			ms.firstDone = make(chan struct{})
			ms.untried = len(ms.slots)
		}
		sh.d.msgs[ms.id] = ms
		ms.seg.live++
		for _, seg := range sh.pinned {
			seg.pins.Add(-1)
		}
		g.scheduleFresh(ms, now)
		g.mu.Unlock()
		g.cond.Broadcast()
	}
	if mode != ModeInteractive {
		return nil
	}
	q.awaitFirstAttempts(ctx, shares)
	if !durable {
		// What the attempts left pending must be on disk before the 250.
		for _, sh := range shares {
			if _, _, err := sh.d.j.append(true, false); err != nil {
				return fmt.Errorf("enqueue %s: sync: %w", m.ID, err)
			}
		}
	}
	return nil
}

// write routes every envelope of m to its group's share and writes the
// heads and envelope records, all but the last batch of each share.
func (q *Queue) write(m *Message) ([]*share, error) {
	byGroup := map[string]*share{}
	var shares []*share
	add := func(pi int, e envelope.Envelope) error {
		if len(e.Recipients) == 0 {
			return nil
		}
		name := e.Group
		if name == "" {
			name = DefaultGroup
		}
		sh := byGroup[name]
		if sh == nil {
			g := q.groups[name]
			if g == nil {
				return fmt.Errorf("enqueue %s: envelope for %s names unknown queue group %q", m.ID, e.Domain, name)
			}
			d := g.pickDir()
			sh = &share{g: g, d: d, ms: newMsgState(m.ID, m.Received, d), parts: map[partKey]int{}, body: m.Body}
			sh.ms.utf8 = m.SMTPUTF8
			byGroup[name] = sh
			shares = append(shares, sh)
		}
		return sh.add(pi, m.Parts[pi].layout(), e)
	}
	for _, p := range m.Parts {
		if err := p.checkLayout(m.Body.Size()); err != nil {
			return nil, fmt.Errorf("enqueue %s: %w", m.ID, err)
		}
	}
	for pi, p := range m.Parts {
		for _, e := range p.Envelopes {
			if err := add(pi, e); err != nil {
				return shares, err
			}
		}
		if p.Stream != nil {
			if err := p.Stream(func(e envelope.Envelope) error { return add(pi, e) }); err != nil {
				return shares, fmt.Errorf("enqueue %s: expand: %w", m.ID, err)
			}
		}
	}
	return shares, nil
}

// add encodes envelope e of part pi (whose copy is laid out as layout)
// and appends the batch when it is full.
func (sh *share) add(pi int, layout partState, e envelope.Envelope) error {
	ms := sh.ms
	key := partKey{pi, e.Sender}
	part, ok := sh.parts[key]
	if !ok {
		part = len(ms.parts)
		sh.parts[key] = part
		layout.sender = e.Sender
		ms.parts = append(ms.parts, layout)
		ms.failed = append(ms.failed, 0)
		if sh.written {
			// The head is out: the part gets a record of its own.
			sh.batch = append(sh.batch, complete(encodePart(ms.id, part, ms.parts[part])))
			sh.batchEnv = append(sh.batchEnv, -1)
		}
	}
	i := len(ms.slots)
	rec := encodeEnvelope(ms.id, i, part, e.Domain, e.Recipients)
	ms.addEnvelope(nil, 0, part, e.Domain, len(e.Recipients))
	sh.batch = append(sh.batch, complete(rec))
	sh.batchEnv = append(sh.batchEnv, i)
	sh.size += len(rec)
	if sh.size < batchBytes {
		return nil
	}
	return sh.flush(false)
}

// flush appends the head (the first time) and the batch, then extra.
func (sh *share) flush(sync bool, extra ...record) error {
	recs := sh.batch
	envIdx := sh.batchEnv
	var head record
	if !sh.written {
		var err error
		if head, err = encodeHead(sh.ms, sh.body); err != nil {
			return err
		}
		recs = append([]record{head}, recs...)
		envIdx = append([]int{-1}, envIdx...)
	}
	recs = append(recs, extra...)
	seg, offs, err := sh.d.j.append(sync, true, recs...)
	if err != nil {
		return err
	}
	sh.pinned = append(sh.pinned, seg)
	ms := sh.ms
	if !sh.written {
		sh.written = true
		ms.seg, ms.bodyOff, ms.bodyLen = seg, offs[0]+head.size()-sh.body.Size(), sh.body.Size()
	}
	if len(ms.segs) == 0 || ms.segs[len(ms.segs)-1] != seg {
		ms.segs = append(ms.segs, seg)
	}
	for k, i := range envIdx {
		if i >= 0 {
			ms.slots[i].seg, ms.slots[i].off = uint32(len(ms.segs)-1), offs[k]
		}
	}
	sh.batch, sh.batchEnv, sh.size = sh.batch[:0], sh.batchEnv[:0], 0
	return nil
}

// commit writes what is left of each share and its commit record. One
// share: in one append, synced if durable. Several: every share's last
// batch first, synced everywhere, then the commit records; replay
// commits a share whose sibling in another group has its commit record
// (commitSplit), so the post is delivered whole or, if the server died
// before any commit, not at all. Shares are written in parallel, one
// writer per directory.
func (q *Queue) commit(shares []*share, durable bool) error {
	each := func(fn func(sh *share) error) error {
		var wg sync.WaitGroup
		for _, sh := range shares {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sh.err = fn(sh)
			}()
		}
		wg.Wait()
		var errs []error
		for _, sh := range shares {
			if sh.err != nil {
				errs = append(errs, fmt.Errorf("group %s: %w", sh.g.cfg.Name, sh.err))
			}
		}
		return errors.Join(errs...)
	}
	commitRec := func(sh *share) record { return complete(encodeCommit(sh.ms.id, len(sh.ms.slots))) }
	if len(shares) == 1 {
		return each(func(sh *share) error { return sh.flush(durable, commitRec(sh)) })
	}
	if err := each(func(sh *share) error { return sh.flush(durable) }); err != nil {
		return err
	}
	return each(func(sh *share) error {
		_, _, err := sh.d.j.append(durable, false, commitRec(sh))
		return err
	})
}

// undo withdraws the shares of a message the client will be told to
// send again: what was written gets a delete record, so it is never
// delivered, and the pins are released.
func (q *Queue) undo(id string, shares []*share) {
	for _, sh := range shares {
		for _, seg := range sh.pinned {
			seg.pins.Add(-1)
		}
		if !sh.written {
			continue
		}
		if _, _, err := sh.d.j.append(true, false, complete(encodeDelete(id))); err != nil {
			q.log.Error("cannot withdraw partly queued message; it may be delivered although the client was told to retry",
				"qid", id, "group", sh.g.cfg.Name, "err", err)
		}
	}
}

func (q *Queue) awaitFirstAttempts(ctx context.Context, shares []*share) {
	for _, sh := range shares {
		select {
		case <-sh.ms.firstDone:
		case <-ctx.Done():
			return
		case <-q.runCtx.Done():
			return
		}
	}
}

// commitSplit settles, after replay, the shares whose commit record was
// never read: one whose message has a committed share in another
// directory is committed now (the server died between a split post's
// commit records); any other was being written when the server died, or
// was a relocation's copy, and is forgotten: its client never got a 250,
// or its old copy stands.
func (q *Queue) commitSplit(readOnly bool) {
	committed := map[string]bool{}
	for _, g := range q.order {
		for _, d := range g.dirs {
			for id := range d.msgs {
				committed[id] = true
			}
		}
	}
	for _, g := range q.order {
		for _, d := range g.dirs {
			for id, m := range d.pending {
				switch {
				case d.msgs[id] == nil && committed[id]:
					if !readOnly {
						if _, _, err := d.j.append(true, false, complete(encodeCommit(id, len(m.slots)))); err != nil {
							q.log.Error("cannot commit the rest of a split message; it stays pending", "qid", id, "err", err)
							continue
						}
					}
					m.committed = true
					d.msgs[id] = m
					q.log.Info("committed the rest of a split message", "qid", id, "group", g.cfg.Name)
				case d.msgs[id] == nil:
					q.log.Warn("dropped a message that was being queued when the server stopped; the client was not told it was accepted",
						"qid", id, "group", g.cfg.Name)
				}
			}
			d.pending = nil
		}
	}
}
