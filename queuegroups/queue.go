package queuegroups

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
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
	unsettled []string      // messages recovered owing a DSN, which Start sends
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
		ids: NewNodeIDSource(cfg.Node), bodies: newBodyPool()}
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
	q.commitSplit(readOnly)
	q.scheduleRecovered()
	return q, nil
}

// MaxChildren is the cap on deliveries in progress over all groups:
// MaxQueueChildren, or AutoQueueChildren when that is 0.
func (q *Queue) MaxChildren() int { return cap(q.children) }

func (q *Queue) closeDirs() {
	for _, g := range q.order {
		for _, d := range g.dirs {
			d.close()
		}
	}
}

// scheduleRecovered schedules every pending recipient found by replay;
// messages that may still owe a DSN are settled by Start.
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
			case passReported:
				q.settle(m.id)
				q.warnDelayed(g, m, time.Now())
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
