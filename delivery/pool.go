package delivery

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// busyRetry is the RetryAfter given to recipients deferred because their
// destination had no free connection slot: soon, but not a busy loop.
const busyRetry = 5 * time.Second

// destForget is how long an unused MX group's state is kept.
const destForget = 10 * time.Minute

// Errors from acquiring a connection slot.
var (
	errBusy      = errors.New("destination busy")
	errSuspended = errors.New("destination suspended")
)

// destination is one MX group: every domain whose MX hosts are the same
// shares it, since one provider hosts many domains. It holds the group's
// connection budget, its adaptive concurrency window (Postfix's
// scheduler: start low, +1 after a window's worth of successes, -1 per
// failure, halved or suspended by reply rules, suspended when dead) and
// its idle cached connections.
type destination struct {
	key string
	lim limits

	window    int // connections allowed now, 1..lim.maxConns
	successes int // since the window last grew
	failures  int // consecutive failed sessions
	open      int // connections open: in use plus idle
	idle      []*conn
	until     time.Time // suspended until
	why       string    // reason for the suspension
	nextStart time.Time // rate delay: earliest next transaction
	lastUsed  time.Time // last handed a connection or slot
	wake      chan struct{}
}

// pool owns every destination and the connection cache shared by all
// Deliver calls. One mutex covers it: the work under it is tiny next to a
// network round trip.
type pool struct {
	cfg   *Config
	now   func() time.Time
	mu    sync.Mutex
	dests map[string]*destination
	idle  list.List // *conn, oldest first, across destinations
	wg    sync.WaitGroup
	done  chan struct{}
	shut  bool
}

func newPool(cfg *Config) *pool {
	p := &pool{cfg: cfg, now: time.Now, dests: map[string]*destination{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.janitor()
	return p
}

// dest returns the destination for key, creating it with lim.
func (p *pool) dest(key string, lim limits) *destination {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.dests[key]
	if !ok {
		d = &destination{key: key, lim: lim, window: min(p.cfg.InitialConcurrency, lim.maxConns), wake: make(chan struct{}), lastUsed: p.now()}
		p.dests[key] = d
	}
	d.lastUsed = p.now() // keeps the janitor from forgetting it under us
	return d
}

// acquire returns an idle cached connection of d, or nil with a slot
// reserved for dialling a new one. It waits at most cfg.SlotWait for a
// slot, then gives up with errBusy so the runner can serve other
// destinations; a suspended destination is errSuspended at once.
func (p *pool) acquire(ctx context.Context, d *destination) (*conn, error) {
	timer := time.NewTimer(p.cfg.SlotWait)
	defer timer.Stop()
	for {
		p.mu.Lock()
		if now := p.now(); now.Before(d.until) {
			err := fmt.Errorf("%w until %s: %s", errSuspended, d.until.UTC().Format(time.RFC3339), d.why)
			p.mu.Unlock()
			return nil, err
		}
		if n := len(d.idle); n > 0 {
			c := d.idle[n-1] // the most recently used is the least likely to have timed out
			if p.now().Sub(c.idleSince) >= p.cfg.ConnIdleTimeout {
				// The janitor has not got to it yet.
				p.evictLocked(c)
				p.mu.Unlock()
				p.quitAll([]*conn{c})
				continue
			}
			d.idle = d.idle[:n-1]
			p.idle.Remove(c.elem)
			d.lastUsed = p.now()
			p.mu.Unlock()
			return c, nil
		}
		if d.open < d.window {
			d.open++
			d.lastUsed = p.now()
			p.mu.Unlock()
			return nil, nil
		}
		wake := d.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-timer.C:
			return nil, fmt.Errorf("%w: %d connections in use", errBusy, d.window)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// rateWait spaces transaction starts to d by its rate delay (Postfix's
// default_destination_rate_delay), on new and reused connections alike.
func (p *pool) rateWait(ctx context.Context, d *destination) error {
	if d.lim.rateDelay <= 0 {
		return nil
	}
	p.mu.Lock()
	now := p.now()
	start := now
	if d.nextStart.After(now) {
		start = d.nextStart
	}
	d.nextStart = start.Add(d.lim.rateDelay)
	p.mu.Unlock()
	if wait := start.Sub(now); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// release returns c (nil for a slot whose dial failed) to d. A healthy
// connection under its limits goes to the cache; others are closed. The
// cache holds at most cfg.ConnCacheSize connections: the oldest idle one
// makes room.
func (p *pool) release(d *destination, c *conn) {
	var closing []*conn
	p.mu.Lock()
	switch {
	case c == nil:
		d.open--
	case !c.broken && !p.shut && p.cfg.ConnCacheSize > 0 && c.txns < d.lim.txnsPerConn &&
		p.now().Sub(c.created) < p.cfg.ConnMaxAge && d.open <= d.window:
		c.idleSince = p.now()
		c.dest = d
		d.idle = append(d.idle, c)
		c.elem = p.idle.PushBack(c)
		if p.idle.Len() > p.cfg.ConnCacheSize {
			closing = append(closing, p.evictLocked(p.idle.Front().Value.(*conn)))
		}
	default:
		d.open--
		closing = append(closing, c)
	}
	close(d.wake)
	d.wake = make(chan struct{})
	p.mu.Unlock()
	p.quitAll(closing)
}

// evictLocked takes c out of the cache and its destination's count.
func (p *pool) evictLocked(c *conn) *conn {
	d := c.dest
	p.idle.Remove(c.elem)
	for i, ic := range d.idle {
		if ic == c {
			d.idle = append(d.idle[:i], d.idle[i+1:]...)
			break
		}
	}
	d.open--
	close(d.wake)
	d.wake = make(chan struct{})
	return c
}

// quitAll closes cs politely in the background; close waits for them.
// Once the pool is shut, the caller waits instead, so nothing is added to
// the wait group while close is waiting on it.
func (p *pool) quitAll(cs []*conn) {
	if len(cs) == 0 {
		return
	}
	p.mu.Lock()
	shut := p.shut
	if !shut {
		p.wg.Add(len(cs))
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !shut {
				defer p.wg.Done()
			}
			c.quit()
		}()
	}
	if shut {
		wg.Wait()
	}
}

// janitor closes connections idle longer than cfg.ConnIdleTimeout.
func (p *pool) janitor() {
	defer p.wg.Done()
	tick := time.NewTicker(max(p.cfg.ConnIdleTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
		var closing []*conn
		p.mu.Lock()
		now := p.now()
		for e := p.idle.Front(); e != nil; {
			c := e.Value.(*conn)
			e = e.Next()
			if now.Sub(c.idleSince) >= p.cfg.ConnIdleTimeout {
				closing = append(closing, p.evictLocked(c))
			}
		}
		// Forget groups unused for a while, so the map does not grow with
		// every domain ever seen; their window starts over next time.
		for key, d := range p.dests {
			if d.open == 0 && !now.Before(d.until) && now.Sub(d.lastUsed) > destForget {
				delete(p.dests, key)
			}
		}
		p.mu.Unlock()
		p.quitAll(closing)
	}
}

// close says QUIT on every cached connection and waits for it.
func (p *pool) close() {
	p.mu.Lock()
	if p.shut {
		p.mu.Unlock()
		return
	}
	p.shut = true
	var closing []*conn
	for p.idle.Len() > 0 {
		closing = append(closing, p.evictLocked(p.idle.Front().Value.(*conn)))
	}
	p.mu.Unlock()
	close(p.done)
	p.quitAll(closing) // shut: waits for the QUITs, in parallel
	p.wg.Wait()
}

// feedback adjusts d after one Deliver: ok means a session got as far as
// a transaction; otherwise no host would talk. A failed session at a
// window of 1 with DeadAfter consecutive failures suspends the group.
func (p *pool) feedback(d *destination, ok bool, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok {
		d.failures = 0
		d.successes++
		if d.successes >= d.window && d.window < d.lim.maxConns {
			d.window++
			d.successes = 0
		}
		return
	}
	d.successes = 0
	d.failures++
	d.window = max(1, d.window-1)
	if d.window == 1 && d.failures >= p.cfg.DeadAfter {
		d.until = p.now().Add(p.cfg.DeadSuspend)
		d.why = "destination not responding: " + reason
		d.failures = 0
	}
}

// apply carries out a reply rule's action on d.
func (p *pool) apply(d *destination, r ReplyRule, reply string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.Action {
	case ActionHalve:
		d.window = max(1, d.window/2)
		d.successes = 0
	case ActionSuspend:
		d.window = 1
		d.until = p.now().Add(r.Suspend)
		d.why = "reply rule: " + reply
	}
}

// DestinationState is a snapshot of one MX group's scheduling state.
type DestinationState struct {
	Key            string    // the MX group: its MX host names, or the route
	Window         int       // connections currently allowed
	Open           int       // connections open, in use or idle
	Idle           int       // of which idle in the cache
	SuspendedUntil time.Time // zero when not suspended
}

func (p *pool) state(d *destination) DestinationState {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := DestinationState{Key: d.key, Window: d.window, Open: d.open, Idle: len(d.idle)}
	if p.now().Before(d.until) {
		s.SuspendedUntil = d.until
	}
	return s
}

// busy reports, without waiting, whether acquire on d would wait or fail.
func (p *pool) busy(d *destination) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.now().Before(d.until) || (len(d.idle) == 0 && d.open >= d.window)
}
