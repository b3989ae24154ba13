package delivery

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// busyRetry is the RetryAfter given to recipients deferred because their
// destination had no free connection slot: soon, but not a busy loop.
const busyRetry = 5 * time.Second

// destForget is how long an unused MX group's state is kept; learnTTL is
// how long one that has learned a limit is kept, unless the pool already
// remembers maxDests groups.
const (
	destForget = 10 * time.Minute
	learnTTL   = 24 * time.Hour
	maxDests   = 50_000
)

// maxDeadDoublings bounds how often a dead group's suspension doubles:
// 2^5 = 32 × DeadSuspend.
const maxDeadDoublings = 5

// Errors from acquiring a connection slot.
var (
	errBusy      = errors.New("destination busy")
	errSuspended = errors.New("destination suspended")
)

// destination is one MX group: every domain whose MX hosts are the same
// shares it, since one provider hosts many domains. It holds the group's
// connection budget, its adaptive concurrency window (Postfix's
// scheduler: start low, grow on success, shrink on failure, halved or
// suspended by reply rules, suspended when dead), the limits it has
// taught us with its 421s and 452s, and its idle cached connections.
type destination struct {
	key string
	lim limits

	window    int  // connections allowed now, 1..maxConns()
	slowStart bool // +1 per success until the first failure, then +1 per window
	successes int  // since the window last grew (after slow start)
	failures  int  // consecutive failed sessions
	alive     bool // a connect has succeeded since the group was last found dead
	answered  bool // a server of the group has greeted us since then
	proven    bool // a session got as far as a transaction
	open      int  // connections open: dialling, in use, idle or closing
	greeting  int  // of which connected and waiting for the greeting
	greeted   int  // of which the server has greeted (sessions it counts)
	idle      []*conn
	until     time.Time // suspended until
	why       string    // reason for the suspension
	deadRun   int       // suspensions for not answering, in a row

	pause      time.Duration // current throttle pause, 0 when none
	pauseUntil time.Time     // no new connection before this
	slowGreet  time.Duration // the last greeting, if it took over slowGreeting

	// Limits learned from the group's replies, 0 when none: sessions at
	// once (421 at the greeting while others were open), transactions
	// per connection (421 to a later transaction), recipients per
	// transaction (452 after some were accepted).
	capConns, capTxns, capRcpts int
	learned                     time.Time // when one was last learned

	nextStart time.Time // rate delay: earliest next transaction
	lastUsed  time.Time // last handed a connection or slot
	wake      chan struct{}
}

// maxConns is the configured cap, or the learned one if lower.
func (d *destination) maxConns() int { return lower(d.lim.maxConns, d.capConns) }

func (d *destination) txnsPerConn() int { return lower(d.lim.txnsPerConn, d.capTxns) }

func (d *destination) rcptsPerTxn() int { return lower(d.lim.rcptsPerTxn, d.capRcpts) }

// allowed is how many connections may be open now: one probe until a
// server of the group has greeted us (so a host that never answers, or
// holds its greeting, holds one slot, not a window), then the window.
func (d *destination) allowed() int {
	if !d.answered {
		return 1
	}
	return d.window
}

// lower is the smaller of a limit and a learned cap, 0 meaning none.
func lower(limit, learned int) int {
	if learned > 0 && learned < limit {
		return learned
	}
	return limit
}

func (d *destination) signal() {
	close(d.wake)
	d.wake = make(chan struct{})
}

// pool owns every destination and the connection cache shared by all
// Deliver calls. One mutex covers it: the work under it is tiny next to a
// network round trip.
type pool struct {
	cfg *Config
	// slowGreeting is the constant of that name; tests shorten it.
	slowGreeting time.Duration
	now          func() time.Time
	mu           sync.Mutex
	dests        map[string]*destination
	idle         list.List // *conn, oldest first, across destinations
	conns        connectTimes
	// more is closed (and replaced) when some group's slots grew.
	more chan struct{}
	wg   sync.WaitGroup
	done chan struct{}
	shut bool
}

func newPool(cfg *Config) *pool {
	p := &pool{cfg: cfg, slowGreeting: slowGreeting, now: time.Now, dests: map[string]*destination{}, done: make(chan struct{}), more: make(chan struct{})}
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
		d = &destination{key: key, lim: lim, window: min(p.cfg.InitialConcurrency, lim.maxConns), slowStart: true,
			wake: make(chan struct{}), lastUsed: p.now()}
		p.dests[key] = d
	}
	d.lastUsed = p.now() // keeps the janitor from forgetting it under us
	return d
}

// acquire returns an idle cached connection of d from source pool src
// (sources.go), or nil with a slot reserved for dialling a new one. It waits at most cfg.SlotWait for a
// slot (and for a throttle pause to end), then gives up with errBusy so
// the delivery is deferred briefly; a suspended destination is
// errSuspended at once.
func (p *pool) acquire(ctx context.Context, d *destination, src string) (*conn, error) {
	timer := time.NewTimer(p.cfg.SlotWait)
	defer timer.Stop()
	start := p.now()
	for {
		p.mu.Lock()
		now := p.now()
		if now.Before(d.until) {
			err := fmt.Errorf("%w until %s: %s", errSuspended, d.until.UTC().Format(time.RFC3339), d.why)
			p.mu.Unlock()
			return nil, err
		}
		if i := d.idleFrom(src); i >= 0 {
			c := d.idle[i] // the most recently used is the least likely to have timed out
			if now.Sub(c.idleSince) >= c.idleTimeout(p.cfg) {
				// The janitor has not got to it yet.
				p.evictLocked(c)
				p.mu.Unlock()
				p.retire(c)
				continue
			}
			d.idle = slices.Delete(d.idle, i, i+1) // clears the vacated slot, which would keep the closed connection and its buffers alive
			p.idle.Remove(c.elem)
			d.lastUsed = now
			p.mu.Unlock()
			return c, nil
		}
		if c := d.idleOther(src); c != nil && d.open >= d.allowed() {
			// The group's slots are held by idle connections from
			// another source pool: one closes to make room.
			p.evictLocked(c)
			wake := d.wake
			p.mu.Unlock()
			p.retire(c)
			if err := waitSlot(ctx, wake, 0, timer.C); err != nil {
				return nil, err
			}
			continue
		}
		var pause time.Duration
		if d.open < d.allowed() {
			// A new connection waits out a throttle pause; to a slow
			// greeter it also waits, as long as a greeting takes, for
			// one of ours to come free, which is sooner.
			dialAt := d.pauseUntil
			if d.slowGreet > 0 && d.greeted > 0 {
				dialAt = later(dialAt, start.Add(d.slowGreet))
			}
			if !now.Before(dialAt) {
				d.open++
				d.lastUsed = now
				p.mu.Unlock()
				return nil, nil
			}
			pause = dialAt.Sub(now)
		}
		wake, allowed := d.wake, d.allowed()
		p.mu.Unlock()
		if err := waitSlot(ctx, wake, pause, timer.C); err != nil {
			if errors.Is(err, errBusy) {
				return nil, fmt.Errorf("%w: %d connections in use", err, allowed)
			}
			return nil, err
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// waitSlot waits for wake, for pause to pass (if positive), for the slot
// timer (errBusy) or for ctx to end.
func waitSlot(ctx context.Context, wake <-chan struct{}, pause time.Duration, slot <-chan time.Time) error {
	var paused <-chan time.Time
	if pause > 0 {
		pt := time.NewTimer(pause)
		defer pt.Stop()
		paused = pt.C
	}
	select {
	case <-wake:
	case <-paused:
	case <-slot:
		return errBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
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

// dialed ends the dial of a slot acquire gave when no host took it: the
// slot is free.
func (p *pool) dialed(d *destination) {
	p.mu.Lock()
	d.open--
	d.signal()
	p.mu.Unlock()
}

// Sessions the server has greeted count against its limit on sessions
// from our address; greeting counts the connections still waiting to
// learn whether they are one. A connection moves from greeting to
// greeted (its 220) or out (greetFailed), and a greeted one that fails
// before the pool has it is ungreeted.
func (p *pool) greet(d *destination, took time.Duration) {
	p.mu.Lock()
	d.greeting--
	d.greeted++
	d.slowGreet = 0
	if took > p.slowGreeting {
		d.slowGreet = took
	}
	d.signal()
	if !d.answered {
		d.answered = true
		p.moreLocked()
	}
	p.mu.Unlock()
}

// moreLocked tells whoever waits on slotsChanged that a group may take
// more deliveries than before. Called with p.mu held.
func (p *pool) moreLocked() {
	close(p.more)
	p.more = make(chan struct{})
}

// slotsChanged returns a channel closed when some group's slots next
// grow.
func (p *pool) slotsChanged() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.more
}

func (p *pool) greetFailed(d *destination) {
	p.mu.Lock()
	d.greeting--
	d.signal()
	p.mu.Unlock()
}

func (p *pool) ungreet(d *destination) {
	p.mu.Lock()
	d.greeted--
	p.mu.Unlock()
}

// release returns c to d. A healthy
// connection under its limits goes to the cache; others are closed, and
// their slot is free only once the server has closed too (retire). The
// cache holds at most cfg.ConnCacheSize connections: the oldest idle one
// makes room.
func (p *pool) release(d *destination, c *conn) {
	var closing []*conn
	p.mu.Lock()
	now := p.now()
	switch {
	case !c.broken && !p.shut && p.cfg.ConnCacheSize > 0 && c.txns < d.txnsPerConn() &&
		now.Sub(c.created) < p.cfg.ConnMaxAge && d.open <= d.allowed() && !now.Before(d.until):
		c.idleSince = now
		d.idle = append(d.idle, c)
		c.elem = p.idle.PushBack(c)
		if p.idle.Len() > p.cfg.ConnCacheSize {
			closing = append(closing, p.evictLocked(p.idle.Front().Value.(*conn)))
		}
	default:
		closing = append(closing, c)
	}
	d.signal()
	p.mu.Unlock()
	p.retire(closing...)
}

// evictLocked takes c out of the cache; its slot stays taken until
// retire has closed it.
func (p *pool) evictLocked(c *conn) *conn {
	d := c.dest
	p.idle.Remove(c.elem)
	for i, ic := range d.idle {
		if ic == c {
			d.idle = slices.Delete(d.idle, i, i+1)
			break
		}
	}
	return c
}

// retire closes cs in the background (close waits for them) and frees
// each one's slot once the server has closed its side: a receiver counts
// a session until then, so a new connection in the same slot must not
// overlap it. Once the pool is shut the caller waits instead, so nothing
// is added to the wait group while close is waiting on it.
func (p *pool) retire(cs ...*conn) {
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
			c.close(quitWait(p.cfg))
			p.mu.Lock()
			c.dest.open--
			c.dest.greeted--
			c.dest.signal()
			p.mu.Unlock()
		}()
	}
	if shut {
		wg.Wait()
	}
}

// slowGreeting is a greeting slow enough (a tarpit's) that a delivery
// to its group rather waits for a connection of ours to come free than
// dial a new one. Servers greet within a round trip or two, tarpits
// after half a minute or more, greet-pause setups after about 5 s; a
// busy machine of ours, starting thousands of sessions at once, can
// take seconds to see an honest greeting, and a lower mark held the
// first connections to a big provider to one at a time.
const slowGreeting = 10 * time.Second

// quitWait bounds how long a closing connection waits for the server to
// close its side.
func quitWait(cfg *Config) time.Duration { return min(cfg.CommandTimeout, 10*time.Second) }

// janitor closes connections idle too long and forgets unused groups.
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
			if now.Sub(c.idleSince) >= c.idleTimeout(p.cfg) {
				closing = append(closing, p.evictLocked(c))
			}
		}
		// Forget groups unused for a while, so the map does not grow with
		// every domain ever seen; their window starts over next time. What
		// a group taught us is kept for a day, within bounds.
		for key, d := range p.dests {
			if d.open > 0 || now.Before(d.until) || now.Sub(d.lastUsed) <= destForget {
				continue
			}
			if !d.learned.IsZero() && now.Sub(d.learned) < learnTTL && len(p.dests) < maxDests {
				continue
			}
			delete(p.dests, key)
		}
		p.mu.Unlock()
		p.retire(closing...)
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
	p.retire(closing...) // shut: waits for the QUITs, in parallel
	p.wg.Wait()
}

// connected records that a connect to d succeeded after took: d is alive,
// so its whole window may dial, and took feeds the connect timeout.
func (p *pool) connected(d *destination, took time.Duration) {
	p.conns.add(took)
	p.mu.Lock()
	defer p.mu.Unlock()
	d.greeting++
	if !d.alive {
		d.alive = true
		d.signal()
	}
}

// connectTimeout is the connect timeout for d: the full ConnectTimeout
// for a group reached before or being retried after it did not answer,
// else four times the slowest recent connect, within ConnectTimeoutMin
// and ConnectTimeout.
func (p *pool) connectTimeout(d *destination) time.Duration {
	p.mu.Lock()
	known := d.alive || d.deadRun > 0
	p.mu.Unlock()
	if known {
		return p.cfg.ConnectTimeout
	}
	return min(max(4*p.conns.slowest(), p.cfg.ConnectTimeoutMin), p.cfg.ConnectTimeout)
}

// dead suspends d because it did not answer at all (a connect or a
// greeting timed out): DeadSuspend, doubled for each such suspension in
// a row. Waiting deliveries learn it at once.
func (p *pool) dead(d *destination, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.suspendDeadLocked(d, reason)
}

func (p *pool) suspendDeadLocked(d *destination, reason string) {
	d.until = p.now().Add(p.cfg.DeadSuspend << min(d.deadRun, maxDeadDoublings))
	d.why = "destination not responding: " + reason
	d.deadRun++
	d.window, d.failures, d.successes, d.alive, d.answered, d.slowStart = 1, 0, 0, false, false, false
	d.signal()
}

// feedback adjusts d after one Deliver: ok means a session got as far as
// a transaction; otherwise no host would talk. A failed session at a
// window of 1 with DeadAfter consecutive failures suspends the group.
func (p *pool) feedback(d *destination, ok bool, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok {
		if !d.proven {
			d.proven = true
			p.moreLocked()
		}
		d.failures, d.deadRun, d.pause = 0, 0, 0
		switch {
		case d.window >= d.maxConns():
			d.window = d.maxConns()
		case d.slowStart:
			d.window++
			d.signal()
			p.moreLocked()
		default:
			if d.successes++; d.successes >= d.window {
				d.window++
				d.successes = 0
				d.signal()
				p.moreLocked()
			}
		}
		return
	}
	d.successes = 0
	d.slowStart = false
	d.failures++
	d.window = max(1, d.window-1)
	if d.window == 1 && d.failures >= p.cfg.DeadAfter {
		p.suspendDeadLocked(d, reason)
	}
}

// throttled pauses new connections to d after a 421 that taught no
// limit: ThrottlePause, doubling with each in a row up to
// ThrottlePauseMax, until a transaction works again. It returns the
// pause.
func (p *pool) throttled(d *destination) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d.slowStart = false
	if d.pause == 0 {
		d.pause = p.cfg.ThrottlePause
	} else {
		d.pause = min(2*d.pause, p.cfg.ThrottlePauseMax)
	}
	d.pauseUntil = p.now().Add(d.pause)
	return d.pause
}

// pauseLeft is how long new connections to d still wait.
func (p *pool) pauseLeft(d *destination) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(0, d.pauseUntil.Sub(p.now()))
}

// tooManyConns handles a 421 at the greeting of a slot's connection,
// once that connection is closed: if other sessions of ours with d were
// open, the server's limit on sessions from one address is at most
// theirs, so d learns that cap and the window drops to it; the caller
// then waits for one of them. Only sessions the server has greeted are
// counted, not dials still waiting for their greeting, so the cap errs
// low, never high: first the greetings in flight are awaited (for at
// most quitWait), as those that connected before the refused one were
// counted by the server. It reports whether a cap was learned.
func (p *pool) tooManyConns(ctx context.Context, d *destination) bool {
	deadline := time.NewTimer(quitWait(p.cfg))
	defer deadline.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for waiting := true; waiting && d.greeting > 0; {
		wake := d.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-deadline.C:
			waiting = false
		case <-ctx.Done():
			waiting = false
		}
		p.mu.Lock()
	}
	others := d.greeted
	if others < 1 {
		return false
	}
	d.capConns = lower(max(others, 1), d.capConns)
	d.window = min(d.window, d.capConns)
	d.slowStart = false
	d.learned = p.now()
	return true
}

// learnTxns records that d closed a connection after n transactions.
func (p *pool) learnTxns(d *destination, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d.capTxns = lower(max(n, 1), d.capTxns)
	d.learned = p.now()
}

// learnRcpts records that d took only n recipients in one transaction.
func (p *pool) learnRcpts(d *destination, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d.capRcpts = lower(max(n, 1), d.capRcpts)
	d.learned = p.now()
}

// limitsOf returns d's effective per-connection and per-transaction caps.
func (p *pool) limitsOf(d *destination) (txnsPerConn, rcptsPerTxn int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return d.txnsPerConn(), d.rcptsPerTxn()
}

// apply carries out a reply rule's action on d.
func (p *pool) apply(d *destination, r ReplyRule, reply string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.Action {
	case ActionHalve:
		d.window = max(1, d.window/2)
		d.successes = 0
		d.slowStart = false
	case ActionSuspend:
		d.window = 1
		d.until = p.now().Add(r.Suspend)
		d.why = "reply rule: " + reply
		d.signal()
	}
}

// DestinationState is a snapshot of one MX group's scheduling state.
type DestinationState struct {
	Key            string    // the MX group: its MX host names, or the route
	Window         int       // connections currently allowed
	Open           int       // connections open, in use, idle or closing
	Idle           int       // of which idle in the cache
	SuspendedUntil time.Time // zero when not suspended
	// Learned limits, 0 when none: sessions at once, transactions per
	// connection, recipients per transaction.
	MaxConns, TxnsPerConn, RcptsPerTxn int
}

func (p *pool) state(d *destination) DestinationState {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := DestinationState{Key: d.key, Window: d.allowed(), Open: d.open, Idle: len(d.idle),
		MaxConns: d.capConns, TxnsPerConn: d.capTxns, RcptsPerTxn: d.capRcpts}
	if p.now().Before(d.until) {
		s.SuspendedUntil = d.until
	}
	return s
}

// busy reports, without waiting, whether acquire on d would wait or fail.
func (p *pool) busy(d *destination) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	return now.Before(d.until) || (len(d.idle) == 0 && (d.open >= d.allowed() || now.Before(d.pauseUntil)))
}

// slots is how many deliveries to the group named key are worth having in
// progress at once: one (a probe) while it is unknown, suspended, or has
// not greeted us, so a host that never answers or holds its greeting for
// a minute holds one runner; its window once a server has greeted us;
// twice the window once a session has carried a transaction, so that a
// connection coming free finds the next delivery already waiting for it.
func (p *pool) slots(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.dests[key]
	switch {
	case !ok || p.now().Before(d.until) || !d.answered:
		return 1
	case !d.proven:
		return d.window
	}
	return 2 * d.window
}

// connectTimes keeps the last connect durations that succeeded, for the
// adaptive connect timeout.
type connectTimes struct {
	mu   sync.Mutex
	ring [256]time.Duration
	n    int
}

func (ct *connectTimes) add(d time.Duration) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	ct.ring[ct.n%len(ct.ring)] = d
	ct.n++
}

// slowest is the longest of the remembered connects, 0 if none.
func (ct *connectTimes) slowest() time.Duration {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	var m time.Duration
	for _, d := range ct.ring[:min(ct.n, len(ct.ring))] {
		m = max(m, d)
	}
	return m
}
