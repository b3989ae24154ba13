package queuegroups

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"fanmail/delivery"
)

// Deliverer is what the runners hand envelopes to; *delivery.Agent is one.
type Deliverer interface {
	Deliver(ctx context.Context, env delivery.Envelope) []delivery.Result
}

// Config is one queue's settings.
type Config struct {
	Dir         string
	Runners     int           // concurrent deliveries (sendmail R=)
	Sync        bool          // fdatasync before Enqueue returns (sendmail SuperSafe=True)
	RetryMin    time.Duration // first retry delay
	RetryMax    time.Duration // backoff ceiling
	QueueReturn time.Duration // give up after (sendmail Timeout.queuereturn)
	SegmentSize int64         // journal segment size; 0 means 64 MiB
	Logger      *slog.Logger
}

// Queue is a spool directory with its persistent runners.
type Queue struct {
	cfg       Config
	log       *slog.Logger
	deliverer Deliverer
	j         *journal

	mu       sync.Mutex
	cond     *sync.Cond // signalled when work becomes ready or the queue closes
	msgs     map[string]*msgState
	ready    readyRing
	deferred deferHeap
	inflight int
	closing  bool
	wake     chan struct{} // nudges the retry timer when the earliest deferral changes

	runCtx    context.Context
	cancelRun context.CancelFunc
	wg        sync.WaitGroup
	started   bool
}

// Stats is a snapshot of the queue's contents.
type Stats struct {
	Messages   int // messages with pending recipients
	Envelopes  int // envelopes with pending recipients
	Recipients int // pending recipients
	Inflight   int // envelopes being delivered now
	Deferred   int // envelopes waiting for a retry
	Syncs      int64
}

// Open replays the queue directory and returns a queue whose runners
// have not started yet, so recovery can be inspected before delivery.
func Open(cfg Config, d Deliverer) (*Queue, error) {
	if cfg.SegmentSize <= 0 {
		cfg.SegmentSize = 64 << 20
	}
	if cfg.Runners <= 0 {
		cfg.Runners = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	q := &Queue{cfg: cfg, log: cfg.Logger, deliverer: d, msgs: make(map[string]*msgState),
		wake: make(chan struct{}, 1)}
	q.cond = sync.NewCond(&q.mu)
	q.runCtx, q.cancelRun = context.WithCancel(context.Background())
	j, err := openJournal(cfg.Dir, cfg.Sync, cfg.SegmentSize, cfg.Logger, q.replayRecord)
	if err != nil {
		return nil, err
	}
	q.j = j
	q.recover()
	return q, nil
}

// replayRecord rebuilds state from one journal record.
func (q *Queue) replayRecord(seg *segment, off int64, typ byte, payload []byte) error {
	switch typ {
	case recMessage:
		m, bodyOff, bodyLen, err := decodeMessage(payload)
		if err != nil {
			return err
		}
		m.seg = seg
		m.bodyOff = off + frameHeader + 1 + int64(bodyOff)
		m.bodyLen = int64(bodyLen)
		// A later full record (a relocation) replaces the earlier one.
		q.msgs[m.id] = m
	case recStatus:
		u, err := decodeStatus(payload)
		if err != nil {
			return err
		}
		m := q.msgs[u.id]
		if m == nil || u.env >= len(m.envs) {
			return nil // the message finished and its record was collected
		}
		applyUpdate(m.envs[u.env], u)
	default:
		return fmt.Errorf("unknown record type %d", typ)
	}
	return nil
}

// recover schedules every pending recipient found by replay.
func (q *Queue) recover() {
	now := time.Now()
	var msgs, rcpts int
	for id, m := range q.msgs {
		for _, e := range m.envs {
			if n := e.pendingCount(); n > 0 {
				m.pending++
				rcpts += n
			}
		}
		if m.pending == 0 {
			delete(q.msgs, id)
			continue
		}
		msgs++
		m.seg.live++
		for _, e := range m.envs {
			if e.pendingCount() == 0 {
				continue
			}
			if e.next.After(now) {
				heap.Push(&q.deferred, e)
			} else {
				q.ready.push(e)
			}
		}
	}
	q.collect()
	if msgs > 0 {
		q.log.Info("queue recovered", "dir", q.cfg.Dir, "messages", msgs, "recipients", rcpts)
	}
}

// Start launches the runners and the retry timer.
func (q *Queue) Start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		return
	}
	q.started = true
	for i := 0; i < q.cfg.Runners; i++ {
		q.wg.Add(1)
		go q.runner()
	}
	q.wg.Add(1)
	go q.retryTimer()
}

// Enqueue stores m durably and makes every envelope due at once: a split
// post never waits for a queue run. It returns only when the journal has
// synced the record (unless Sync is off).
func (q *Queue) Enqueue(ctx context.Context, m *Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ms := &msgState{id: m.ID, received: m.Received}
	for _, p := range m.Parts {
		part := len(ms.parts)
		ms.parts = append(ms.parts, partState{sender: p.Sender, prefix: p.Prefix})
		for _, e := range p.Envelopes {
			if len(e.Recipients) == 0 {
				continue
			}
			ms.envs = append(ms.envs, &envState{msg: ms, index: len(ms.envs), part: part, domain: e.Domain,
				rcpts: e.Recipients, status: make([]rcptStatus, len(e.Recipients)),
				replies: make([]string, len(e.Recipients)), heapIdx: -1})
		}
	}
	if len(ms.envs) == 0 {
		return errors.New("enqueue: message has no recipients")
	}
	rec := encodeMessage(ms, m.Body)
	seg, offs, err := q.j.append(true, rec)
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", m.ID, err)
	}
	ms.seg = seg
	ms.bodyLen = int64(len(m.Body))
	ms.bodyOff = offs[0] + int64(len(rec)) - ms.bodyLen
	ms.pending = len(ms.envs)

	q.mu.Lock()
	q.msgs[ms.id] = ms
	seg.live++
	seg.pins.Add(-1)
	for _, e := range ms.envs {
		q.ready.push(e)
	}
	q.mu.Unlock()
	q.cond.Broadcast()
	return nil
}

func (q *Queue) runner() {
	defer q.wg.Done()
	for {
		e := q.take()
		if e == nil {
			return
		}
		q.deliver(e)
	}
}

// take blocks until an envelope is due or the queue closes.
func (q *Queue) take() *envState {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.ready.empty() && !q.closing {
		q.cond.Wait()
	}
	if q.closing {
		return nil
	}
	e := q.ready.pop()
	e.inflight = true
	q.inflight++
	return e
}

// deliver runs one attempt of e and records every recipient's outcome.
func (q *Queue) deliver(e *envState) {
	m := e.msg
	var idx []int
	var rcpts []string
	for i, s := range e.status {
		if !s.final() {
			idx = append(idx, i)
			rcpts = append(rcpts, e.rcpts[i])
		}
	}
	part := m.parts[e.part]
	seg, bodyOff, bodyLen := m.seg, m.bodyOff, m.bodyLen
	env := delivery.Envelope{
		QueueID: m.id, Sender: part.sender, Domain: e.domain, Recipients: rcpts,
		Size: int64(len(part.prefix)) + bodyLen,
		Open: func() io.Reader {
			return io.MultiReader(bytes.NewReader(part.prefix), seg.section(bodyOff, bodyLen))
		},
	}
	results := q.deliverer.Deliver(q.runCtx, env)
	if len(results) != len(rcpts) {
		q.log.Error("delivery returned the wrong number of results; deferring", "qid", m.id,
			"domain", e.domain, "want", len(rcpts), "got", len(results))
		results = make([]delivery.Result, len(rcpts))
		for i := range results {
			results[i] = delivery.Result{Recipient: rcpts[i], Status: delivery.Deferred, Text: "internal error"}
		}
	}

	now := time.Now()
	u := &statusUpdate{id: m.id, env: e.index, attempts: e.attempts + 1}
	deferred := false
	for i, r := range results {
		ru := rcptUpdate{index: idx[i], reply: replyText(r)}
		switch r.Status {
		case delivery.Delivered:
			ru.status = rcptDelivered
		case delivery.Failed:
			ru.status = rcptFailed
		default:
			ru.status = rcptPending
			deferred = true
		}
		u.rcpts = append(u.rcpts, ru)
	}
	if deferred {
		next := now.Add(backoff(u.attempts, q.cfg.RetryMin, q.cfg.RetryMax))
		if next.After(m.received.Add(q.cfg.QueueReturn)) {
			for i := range u.rcpts {
				if u.rcpts[i].status == rcptPending {
					u.rcpts[i].status = rcptFailed
					u.rcpts[i].reply = "queue lifetime expired; last reply: " + u.rcpts[i].reply
					q.log.Warn("giving up", "qid", m.id, "rcpt", e.rcpts[u.rcpts[i].index], "status", "expired")
				}
			}
		} else {
			u.next = next
		}
	}
	if _, _, err := q.j.append(false, encodeStatus(u)); err != nil {
		// Nothing was recorded, so the attempt is as if it never happened:
		// try the whole envelope again later rather than lose a recipient.
		q.log.Error("cannot record delivery status; will retry", "qid", m.id, "domain", e.domain, "err", err)
		u = &statusUpdate{id: m.id, env: e.index, attempts: e.attempts, next: now.Add(q.cfg.RetryMin)}
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	applyUpdate(e, u)
	e.inflight = false
	q.inflight--
	if e.pendingCount() > 0 {
		heap.Push(&q.deferred, e)
		q.nudge()
		return
	}
	m.pending--
	if m.pending == 0 {
		delete(q.msgs, m.id)
		m.seg.live--
		q.collect()
		q.log.Info("message done", "qid", m.id)
	}
}

func replyText(r delivery.Result) string {
	if r.Code == 0 {
		return r.Text
	}
	if r.Enhanced != "" {
		return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
	}
	return fmt.Sprintf("%d %s", r.Code, r.Text)
}

// applyUpdate folds a status record into an envelope's state.
func applyUpdate(e *envState, u *statusUpdate) {
	e.attempts = u.attempts
	e.next = u.next
	for _, r := range u.rcpts {
		if r.index < len(e.status) {
			e.status[r.index] = r.status
			e.replies[r.index] = r.reply
		}
	}
}

// collect drops journal segments that no pending message needs and, when
// old segments are pinned by a few long-lived messages, re-writes those
// messages at the head so the segments can go. Called with q.mu held.
func (q *Queue) collect() {
	q.j.dropOldest(func(seg *segment) bool { return seg.live == 0 })
	segs := q.j.segments()
	if len(segs) <= 4 {
		return
	}
	oldest := segs[0]
	for _, m := range q.msgs {
		if m.seg != oldest || m.hasInflight() {
			continue
		}
		if err := q.relocate(m); err != nil {
			q.log.Warn("cannot relocate message from old journal segment", "qid", m.id, "err", err)
			return
		}
	}
	q.j.dropOldest(func(seg *segment) bool { return seg.live == 0 })
}

// relocate writes m's full current state at the journal head. It runs
// with q.mu held and m idle, so no status record of m can be written
// before the new full record lands and then be lost by replay.
func (q *Queue) relocate(m *msgState) error {
	body := make([]byte, m.bodyLen)
	if _, err := m.seg.file.ReadAt(body, m.bodyOff); err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	rec := encodeMessage(m, body)
	seg, offs, err := q.j.append(false, rec)
	if err != nil {
		return err
	}
	m.seg.live--
	m.seg = seg
	m.bodyOff = offs[0] + int64(len(rec)) - m.bodyLen
	seg.live++
	return nil
}

func (m *msgState) hasInflight() bool {
	for _, e := range m.envs {
		if e.inflight {
			return true
		}
	}
	return false
}

// nudge wakes the retry timer; called with q.mu held.
func (q *Queue) nudge() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// retryTimer moves deferred envelopes to the ready ring when they fall due.
func (q *Queue) retryTimer() {
	defer q.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		q.mu.Lock()
		if q.closing {
			q.mu.Unlock()
			return
		}
		now := time.Now()
		moved := false
		for q.deferred.Len() > 0 && !q.deferred[0].next.After(now) {
			e := heap.Pop(&q.deferred).(*envState)
			q.ready.push(e)
			moved = true
		}
		wait := time.Hour
		if q.deferred.Len() > 0 {
			wait = q.deferred[0].next.Sub(now)
		}
		q.mu.Unlock()
		if moved {
			q.cond.Broadcast()
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-q.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-q.runCtx.Done():
			return
		}
	}
}

// Flush makes every deferred envelope due now (sendmail -q, postqueue -f).
func (q *Queue) Flush() {
	q.mu.Lock()
	for q.deferred.Len() > 0 {
		e := heap.Pop(&q.deferred).(*envState)
		q.ready.push(e)
	}
	q.mu.Unlock()
	q.cond.Broadcast()
}

// Stats returns a snapshot of the queue.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Stats{Messages: len(q.msgs), Inflight: q.inflight, Deferred: q.deferred.Len(), Syncs: q.j.syncs.Load()}
	for _, m := range q.msgs {
		for _, e := range m.envs {
			if n := e.pendingCount(); n > 0 {
				s.Envelopes++
				s.Recipients += n
			}
		}
	}
	return s
}

// Close stops the runners: an attempt in progress may finish until ctx
// ends, after which it is cancelled and recorded as deferred. Pending work
// stays in the journal for the next start.
func (q *Queue) Close(ctx context.Context) error {
	q.mu.Lock()
	q.closing = true
	q.nudge()
	q.mu.Unlock()
	q.cond.Broadcast()
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		q.cancelRun()
		<-done
		err = ctx.Err()
	}
	q.cancelRun()
	q.j.close()
	return err
}
