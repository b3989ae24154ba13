package queuegroups

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"fanmail/envelope"
)

// Queue is the spool: every queue group with its directories and runners.
type Queue struct {
	cfg       Config
	log       *slog.Logger
	deliverer Deliverer
	groups    map[string]*group
	order     []*group // config order, for listings

	children  chan struct{} // MaxQueueChildren slots
	ids       *IDSource     // for the DSNs the queue generates
	bounceMu  sync.Mutex    // one settle at a time, so a DSN is sent once
	unsettled []string      // messages recovered done, whose DSN Start sends
	bodies    *bodyPool     // memory parts of the Bodies ingress fills

	runCtx    context.Context
	cancelRun context.CancelFunc
	stop      chan struct{} // closed by Close: the runners stop taking work
	wg        sync.WaitGroup
	startOnce sync.Once
	closeOnce sync.Once
}

// Open locks and replays every group directory and returns a queue whose
// runners have not started yet, so recovery can be inspected first.
func Open(cfg Config, d Deliverer) (*Queue, error) {
	return open(cfg, d, false)
}

// OpenReadOnly replays the spool without locking or writing anything, for
// inspecting the queue while no server runs. Its runners never start.
func OpenReadOnly(cfg Config) (*Queue, error) {
	return open(cfg, nil, true)
}

func open(cfg Config, d Deliverer, readOnly bool) (*Queue, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("queue config: %w", err)
	}
	q := &Queue{cfg: cfg, log: cfg.Logger, deliverer: d, groups: map[string]*group{},
		ids: NewIDSource(), bodies: newBodyPool()}
	q.runCtx, q.cancelRun = context.WithCancel(context.Background())
	q.stop = make(chan struct{})
	children := cfg.MaxQueueChildren
	if children == 0 {
		children = AutoQueueChildren()
	}
	q.children = make(chan struct{}, children)
	retry := retryPolicy{min: cfg.RetryMin, max: cfg.RetryMax, queueReturn: cfg.QueueReturn}
	for _, gc := range cfg.Groups {
		g := newGroup(gc, retry, cfg.MoveAsideAfter, cfg.SuperSafe, d, cfg.Logger)
		for _, path := range gc.Dirs {
			dr, err := openDir(path, cfg.SegmentSize, cfg.Logger, readOnly)
			if err != nil {
				q.closeDirs()
				return nil, fmt.Errorf("queue group %s: %w", gc.Name, err)
			}
			g.dirs = append(g.dirs, dr)
		}
		q.groups[gc.Name] = g
		q.order = append(q.order, g)
	}
	q.scheduleRecovered()
	return q, nil
}

func (q *Queue) closeDirs() {
	for _, g := range q.order {
		for _, d := range g.dirs {
			d.close()
		}
	}
}

// scheduleRecovered schedules every pending recipient found by replay;
// messages that finished but may still owe a DSN are settled by Start.
func (q *Queue) scheduleRecovered() {
	now := time.Now()
	for _, g := range q.order {
		msgs, rcpts, aside, unsettled := g.recovered(now)
		q.unsettled = append(q.unsettled, unsettled...)
		if msgs > 0 {
			q.log.Info("queue recovered", "group", g.cfg.Name, "messages", msgs, "recipients", rcpts, "moved_aside", aside)
		}
	}
}

// Start launches every group's dispatcher and retry timer.
func (q *Queue) Start() {
	q.startOnce.Do(func() {
		for _, g := range q.order {
			if s, ok := q.deliverer.(Slotter); ok {
				q.wg.Add(1)
				go func() {
					defer q.wg.Done()
					g.readmitLoop(s, q.stop)
				}()
			}
			q.wg.Add(2)
			go q.dispatch(g)
			go func() {
				defer q.wg.Done()
				g.retryTimer(q.runCtx)
			}()
		}
		for _, id := range q.unsettled {
			q.settle(id)
		}
		q.unsettled = nil
	})
}

// dispatch is g's persistent queue runner (sendmail -qp): it takes due
// envelopes from g, admitted per destination (see admission), and starts
// a delivery for each, at most the group's runners (R=) at once and
// within the MaxQueueChildren cap; each delivery then sends the DSNs and
// delay warnings its outcome calls for. A delivery waiting on a slow
// destination costs a goroutine and a socket, not a core, so runners are
// many: what bounds them is file descriptors and memory (see Config).
func (q *Queue) dispatch(g *group) {
	defer q.wg.Done()
	var running sync.WaitGroup
	defer running.Wait()
	runners := make(chan struct{}, g.cfg.Runners)
	for {
		runners <- struct{}{}
		e := g.take()
		if e == nil {
			<-runners
			return
		}
		if !q.acquire(g) {
			g.putBack(e)
			<-runners
			return
		}
		running.Add(1)
		go func() {
			defer running.Done()
			defer func() { <-runners }()
			defer q.release(g)
			m, next := g.attempt(q.runCtx, e)
			g.finished(e.domain)
			switch next {
			case shareFinished:
				q.settle(m.id)
			case stillDeferred:
				q.warnDelayed(g, m, time.Now())
			}
		}()
	}
}

// acquire takes one of the MaxQueueChildren slots for a delivery by g;
// the control group is outside the cap.
func (q *Queue) acquire(g *group) bool {
	if g.cfg.Name == ControlGroup {
		return true
	}
	select {
	case q.children <- struct{}{}:
		return true
	case <-q.runCtx.Done():
		return false
	}
}

func (q *Queue) release(g *group) {
	if g.cfg.Name != ControlGroup {
		<-q.children
	}
}

// share is the part of one message that goes to one group.
type share struct {
	g   *group
	d   *dir
	ms  *msgState
	seg *segment
	off int64
	err error
}

// Enqueue stores m durably and schedules its envelopes. Envelopes are
// split across their groups (sendmail's split across queue groups): each
// group gets one record with the body and its own envelopes, in one of
// its directories, and all groups are written in parallel. In background
// mode every envelope is due at once; a split post never waits for a
// queue run. In interactive mode Enqueue returns after the first attempt
// of every envelope; in queue mode envelopes wait one group interval.
func (q *Queue) Enqueue(ctx context.Context, m *Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	mode := m.Mode
	if mode == ModeDefault {
		mode = q.cfg.Mode
	}
	shares, err := q.split(m, mode)
	if err != nil {
		return err
	}
	durable := q.cfg.SuperSafe == SafeTrue || (q.cfg.SuperSafe == SafeInteractive && mode != ModeInteractive)

	var wg sync.WaitGroup
	for _, sh := range shares {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, err := encodeMessage(sh.ms, m.Body)
			if err != nil {
				sh.err = err
				return
			}
			var offs []int64
			sh.seg, offs, sh.err = sh.d.j.append(durable, true, rec)
			if sh.err == nil {
				sh.off = offs[0] + rec.size() - m.Body.Size()
			}
		}()
	}
	wg.Wait()
	if err := q.undoFailed(m.ID, shares); err != nil {
		return err
	}

	now := time.Now()
	for _, sh := range shares {
		ms, g := sh.ms, sh.g
		ms.seg, ms.bodyOff, ms.bodyLen = sh.seg, sh.off, m.Body.Size()
		g.mu.Lock()
		sh.d.msgs[ms.id] = ms
		sh.seg.live++
		sh.seg.pins.Add(-1)
		for _, e := range ms.envs {
			if mode == ModeQueue {
				e.next = now.Add(g.cfg.Interval)
			}
			g.schedule(e, now)
		}
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

// split builds one msgState per group that m's envelopes name. A
// share keeps one part per part of m and envelope sender it holds.
func (q *Queue) split(m *Message, mode DeliveryMode) ([]*share, error) {
	type partKey struct {
		part   int
		sender string
	}
	byGroup := map[string]*share{}
	partIdx := map[*share]map[partKey]int{}
	var shares []*share
	for pi, p := range m.Parts {
		for _, e := range p.Envelopes {
			if len(e.Recipients) == 0 {
				continue
			}
			name := e.Group
			if name == "" {
				name = DefaultGroup
			}
			sh := byGroup[name]
			if sh == nil {
				g := q.groups[name]
				if g == nil {
					return nil, fmt.Errorf("enqueue %s: envelope for %s names unknown queue group %q", m.ID, e.Domain, name)
				}
				d := g.pickDir()
				sh = &share{g: g, d: d, ms: &msgState{id: m.ID, received: m.Received, dir: d}}
				byGroup[name] = sh
				partIdx[sh] = map[partKey]int{}
				shares = append(shares, sh)
			}
			ms := sh.ms
			key := partKey{pi, e.Sender}
			part, ok := partIdx[sh][key]
			if !ok {
				part = len(ms.parts)
				partIdx[sh][key] = part
				ms.parts = append(ms.parts, partState{sender: e.Sender, prefix: p.Prefix})
			}
			ms.envs = append(ms.envs, &envState{msg: ms, index: len(ms.envs), part: part, domain: e.Domain,
				rcpts: e.Recipients, status: make([]rcptStatus, len(e.Recipients)),
				replies: make([]envelope.Reply, len(e.Recipients)), heapIdx: -1})
		}
	}
	if len(shares) == 0 {
		return nil, errors.New("enqueue: message has no recipients")
	}
	for _, sh := range shares {
		sh.ms.pending = len(sh.ms.envs)
		if mode == ModeInteractive {
			sh.ms.firstDone = make(chan struct{})
			sh.ms.untried = len(sh.ms.envs)
		}
	}
	return shares, nil
}

// undoFailed handles a message whose record reached some groups but not
// others: the client will be told to try again, so the written parts are
// deleted rather than delivered twice.
func (q *Queue) undoFailed(id string, shares []*share) error {
	var errs []error
	for _, sh := range shares {
		if sh.err != nil {
			errs = append(errs, fmt.Errorf("group %s: %w", sh.g.cfg.Name, sh.err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	for _, sh := range shares {
		if sh.err != nil {
			continue
		}
		sh.seg.pins.Add(-1)
		if _, _, err := sh.d.j.append(true, false, complete(encodeDelete(id))); err != nil {
			q.log.Error("cannot withdraw partly queued message; it may be delivered although the client was told to retry",
				"qid", id, "group", sh.g.cfg.Name, "err", err)
		}
	}
	return fmt.Errorf("enqueue %s: %w", id, errors.Join(errs...))
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

// Close stops the runners: an attempt in progress may finish until ctx
// ends, after which it is cancelled and recorded as deferred. Pending work
// stays in the journal for the next start.
func (q *Queue) Close(ctx context.Context) error {
	var err error
	q.closeOnce.Do(func() {
		close(q.stop)
		for _, g := range q.order {
			g.mu.Lock()
			g.closing = true
			g.nudge()
			g.mu.Unlock()
			g.cond.Broadcast()
		}
		done := make(chan struct{})
		go func() { q.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			q.cancelRun()
			<-done
			err = ctx.Err()
		}
		q.cancelRun()
		q.closeDirs()
	})
	return err
}
