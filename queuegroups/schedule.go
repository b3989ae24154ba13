package queuegroups

import (
	"context"
	"math"
	"time"

	"fanmail/envelope"
)

// readyRing holds the messages with envelopes due, round-robin, so a
// small post starts delivering while a huge fan-out is still in
// progress. A message's due envelopes are those retried or set aside
// (envs) and, while fresh is set, the next ones at its fresh cursor,
// which are read from the journal only when taken: a fan-out of any
// size costs the ring one entry.
type readyRing struct {
	msgs  []*readyMsg // messages with due envelopes, in turn order
	head  int
	index map[*msgState]*readyMsg
}

type readyMsg struct {
	m     *msgState
	envs  []*envState
	fresh bool
}

func (r *readyRing) empty() bool { return len(r.msgs) == r.head }

// entry returns m's place in the ring, adding it at the back.
func (r *readyRing) entry(m *msgState) *readyMsg {
	if r.index == nil {
		r.index = make(map[*msgState]*readyMsg)
	}
	rm := r.index[m]
	if rm == nil {
		rm = &readyMsg{m: m}
		r.index[m] = rm
		r.msgs = append(r.msgs, rm)
	}
	return rm
}

// push makes an envelope due.
func (r *readyRing) push(e *envState) {
	rm := r.entry(e.msg)
	rm.envs = append(rm.envs, e)
}

// pushFresh makes m's fresh envelopes due.
func (r *readyRing) pushFresh(m *msgState) {
	if m.fresh > 0 {
		r.entry(m).fresh = true
	}
}

// pop takes the next message's oldest due envelope (or its next fresh
// one) and moves that message to the back of the turn order. It returns
// nil when that message turned out to have nothing left.
func (r *readyRing) pop() *envState {
	rm := r.msgs[r.head]
	r.msgs[r.head] = nil
	r.head++
	var e *envState
	switch {
	case len(rm.envs) > 0:
		e = rm.envs[0]
		rm.envs[0] = nil
		rm.envs = rm.envs[1:]
	case rm.fresh:
		e = rm.m.nextFresh()
	}
	rm.fresh = rm.fresh && rm.m.fresh > 0
	if len(rm.envs) > 0 || rm.fresh {
		r.msgs = append(r.msgs, rm)
	} else {
		delete(r.index, rm.m)
	}
	// Reclaim the consumed front once it dominates the slice.
	if r.head > 1024 && r.head*2 > len(r.msgs) {
		r.msgs = append(r.msgs[:0:0], r.msgs[r.head:]...)
		r.head = 0
	}
	return e
}

// timeHeap orders what waits for a time, earliest first: deferred
// envelopes by their next attempt, queue-only messages by when their
// fresh envelopes are due (the group's interval after they were queued).
// Each item keeps its own position in the heap, so it can be taken out
// from the middle. It is container/heap's algorithm on the times
// themselves: no call through an interface or a generic dictionary per
// comparison, as the retry timer and every deferral go through it.
type timeHeap[T any] []timed[T]

type timed[T any] struct {
	at  time.Time
	pos *int // the item's own record of its position, -1 when not here
	it  T
}

func (h timeHeap[T]) Len() int { return len(h) }

// first is when the earliest item is due; h must not be empty.
func (h timeHeap[T]) first() time.Time { return h[0].at }

// push adds it, due at at, keeping its position in *pos.
func (h *timeHeap[T]) push(it T, at time.Time, pos *int) {
	*pos = len(*h)
	*h = append(*h, timed[T]{at: at, pos: pos, it: it})
	h.up(*pos)
}

// pop takes the earliest item; h must not be empty.
func (h *timeHeap[T]) pop() T { return h.removeAt(0) }

// popDue takes the earliest item if it is due at now.
func (h *timeHeap[T]) popDue(now time.Time) (T, bool) {
	if len(*h) == 0 || (*h)[0].at.After(now) {
		var zero T
		return zero, false
	}
	return h.removeAt(0), true
}

// remove takes out the item whose position is kept in *pos, if it is
// in the heap.
func (h *timeHeap[T]) remove(pos *int) {
	if *pos >= 0 {
		h.removeAt(*pos)
	}
}

func (h *timeHeap[T]) removeAt(i int) T {
	old := *h
	n := len(old) - 1
	x := old[i]
	if i != n {
		old.swap(i, n)
		if !old[:n].down(i) {
			old[:n].up(i)
		}
	}
	*x.pos = -1
	old[n] = timed[T]{}
	*h = old[:n]
	return x.it
}

func (h timeHeap[T]) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	*h[i].pos = i
	*h[j].pos = j
}

func (h timeHeap[T]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h[j].at.Before(h[i].at) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

// down moves the item at i0 towards the leaves until it is in order,
// and reports whether it moved.
func (h timeHeap[T]) down(i0 int) bool {
	i := i0
	for {
		j := 2*i + 1
		if j >= len(h) {
			break
		}
		if r := j + 1; r < len(h) && h[r].at.Before(h[j].at) {
			j = r
		}
		if !h[j].at.Before(h[i].at) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

// Slotter is implemented by deliverers that know destinations;
// *delivery.Agent is one, and a Deliverer that wraps another should pass
// it on (Wrap does), or the queue admits every due envelope at once.
// Slots names the destination a domain's mail goes to (several domains
// may share one) and how many deliveries to it are worth having in
// progress at once, without waiting or DNS; 0 or less means no limit.
// SlotsChanged returns a channel closed when some destination may take
// more than before (it answered, or its window grew); nil never fires.
type Slotter interface {
	Slots(domain string) (dest string, n int)
	SlotsChanged() <-chan struct{}
}

// SlotsOf is the Slotter of a Deliverer that wraps Next: embedded in
// the wrapper, it passes both questions on, and sets no limit when Next
// does not know destinations.
type SlotsOf struct{ Next Deliverer }

// Slots is Next's answer, or domain with no limit.
func (s SlotsOf) Slots(domain string) (string, int) {
	if n, ok := s.Next.(Slotter); ok {
		return n.Slots(domain)
	}
	return domain, 0
}

// SlotsChanged is Next's channel, or nil, which never fires.
func (s SlotsOf) SlotsChanged() <-chan struct{} {
	if n, ok := s.Next.(Slotter); ok {
		return n.SlotsChanged()
	}
	return nil
}

// Wrap returns the Deliverer that delivers each envelope with deliver,
// which hands next what it does not handle itself, and that passes
// next's Slots on (SlotsOf), as a deliverer wrapping another must.
func Wrap(next Deliverer, deliver func(ctx context.Context, req envelope.Request, next Deliverer) []envelope.Result) Deliverer {
	return wrapped{SlotsOf: SlotsOf{Next: next}, deliver: deliver}
}

type wrapped struct {
	SlotsOf
	deliver func(ctx context.Context, req envelope.Request, next Deliverer) []envelope.Result
}

func (w wrapped) Deliver(ctx context.Context, req envelope.Request) []envelope.Result {
	return w.deliver(ctx, req, w.Next)
}

var _ Slotter = wrapped{}

// admission keeps the deliveries in progress to each destination within
// its slots and sets the rest of its due envelopes aside, in order, so
// that a destination which is slow, dead or at its connection limit
// holds a few of the group's runners and never all of them, and an
// envelope never waits inside delivery for a connection when another
// destination's could go. Envelopes set aside go back to the ready ring
// when a delivery to their destination ends and when the deliverer says
// destinations have more slots.
//
// A domain's destination can change while its mail is in progress (it
// is the domain itself until its MX is known, then its MX group), so the
// deliveries in progress are counted per domain too, and move with it.
type admission struct {
	active map[string]int         // deliveries in progress, per destination
	parked map[string][]parkedEnv // due envelopes set aside, per destination
	domain map[string]*inProgress // per domain with deliveries in progress
}

// inProgress is one domain's deliveries in progress and the destination
// they count against.
type inProgress struct {
	dest string
	n    int
}

// admit reports whether a delivery of e may start now, counting it if so
// and setting e aside if not. Without a Slotter everything is admitted.
// Called with g.mu held.
func (g *group) admit(e *envState) bool {
	s, ok := g.deliverer.(Slotter)
	if !ok {
		return true
	}
	a := &g.adm
	if a.active == nil {
		a.active, a.parked, a.domain = map[string]int{}, map[string][]parkedEnv{}, map[string]*inProgress{}
	}
	key, n := s.Slots(e.domain)
	if n <= 0 {
		n = math.MaxInt
	}
	ip := a.domain[e.domain]
	if ip != nil && ip.dest != key {
		// The domain's deliveries in progress now count against its new
		// destination; what was set aside under the old one goes back to
		// be admitted afresh.
		old := ip.dest
		g.uncount(old, ip.n)
		a.active[key] += ip.n
		ip.dest = key
		g.releaseLocked(old, true)
	}
	if a.active[key] >= n {
		a.parked[key] = append(a.parked[key], e.msg.park(e))
		return false
	}
	a.active[key]++
	if ip == nil {
		ip = &inProgress{dest: key}
		a.domain[e.domain] = ip
	}
	ip.n++
	return true
}

// uncount takes n deliveries off key's count. Called with g.mu held.
func (g *group) uncount(key string, n int) {
	a := &g.adm
	if a.active[key] -= n; a.active[key] <= 0 {
		delete(a.active, key)
	}
}

// unadmit uncounts a delivery to domain and returns the destination it
// counted against. Called with g.mu held.
func (g *group) unadmit(domain string) (string, bool) {
	ip := g.adm.domain[domain]
	if ip == nil {
		return "", false
	}
	if ip.n--; ip.n <= 0 {
		delete(g.adm.domain, domain)
	}
	g.uncount(ip.dest, 1)
	return ip.dest, true
}

// finished ends a delivery to domain for admission and lets what now
// fits of the envelopes set aside for its destination go back to the
// ready ring.
func (g *group) finished(domain string) {
	g.mu.Lock()
	n := 0
	if key, ok := g.unadmit(domain); ok {
		n = g.releaseLocked(key, false)
	}
	g.mu.Unlock()
	if n > 0 {
		g.cond.Broadcast()
	}
}

// readmitLoop releases envelopes set aside whenever the deliverer says
// destinations have more slots, at most every readmitTick, until stop.
func (g *group) readmitLoop(s Slotter, stop <-chan struct{}) {
	tick := time.NewTicker(readmitTick)
	defer tick.Stop()
	for {
		select {
		case <-s.SlotsChanged():
		case <-stop:
			return
		}
		select {
		case <-tick.C: // coalesce a burst of changes into one pass
		case <-stop:
			return
		}
		g.mu.Lock()
		n := 0
		for key := range g.adm.parked {
			n += g.releaseLocked(key, false)
		}
		g.mu.Unlock()
		if n > 0 {
			g.cond.Broadcast()
		}
	}
}

// readmitTick bounds how often readmitLoop goes over everything set aside.
const readmitTick = 10 * time.Millisecond

// releaseLocked moves as many envelopes set aside for key as it now has
// slots for back to the ready ring: at least one when none is in
// progress, and all of them when asked or when their domain has moved to
// another destination. Envelopes are only set aside under a key with a
// delivery in progress, so none is ever left without one that will
// release it. It returns how many it moved. Called with g.mu held.
func (g *group) releaseLocked(key string, all bool) int {
	a := &g.adm
	waiting := a.parked[key]
	if len(waiting) == 0 {
		return 0
	}
	now, n := g.deliverer.(Slotter).Slots(waiting[0].domain())
	if n <= 0 {
		n = math.MaxInt
	}
	free := max(n-a.active[key], 0)
	switch {
	case all || now != key:
		// The domain's mail goes to another destination now (its MX
		// became known): nothing more will end under key, so all of
		// them go back, to be admitted or set aside under their own.
		free = len(waiting)
	case a.active[key] == 0:
		free = max(free, 1)
	}
	free = min(free, len(waiting))
	for _, w := range waiting[:free] {
		if e := w.m.touch(w.index); e != nil {
			g.ready.push(e)
		}
	}
	if free == len(waiting) {
		delete(a.parked, key)
	} else {
		clear(waiting[:free])
		a.parked[key] = waiting[free:]
	}
	return free
}
