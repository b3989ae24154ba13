package queuegroups

// readyRing holds due envelopes, round-robin across messages, so a small
// post starts delivering while a huge fan-out is still in progress.
type readyRing struct {
	msgs  []*readyMsg // messages with due envelopes, in turn order
	head  int
	index map[*msgState]*readyMsg
}

type readyMsg struct {
	m    *msgState
	envs []*envState
}

func (r *readyRing) empty() bool { return len(r.msgs) == r.head }

func (r *readyRing) push(e *envState) {
	if r.index == nil {
		r.index = make(map[*msgState]*readyMsg)
	}
	rm := r.index[e.msg]
	if rm == nil {
		rm = &readyMsg{m: e.msg}
		r.index[e.msg] = rm
		r.msgs = append(r.msgs, rm)
	}
	rm.envs = append(rm.envs, e)
}

// pop takes the next message's oldest due envelope and moves that message
// to the back of the turn order.
func (r *readyRing) pop() *envState {
	rm := r.msgs[r.head]
	r.msgs[r.head] = nil
	r.head++
	e := rm.envs[0]
	rm.envs[0] = nil
	rm.envs = rm.envs[1:]
	if len(rm.envs) > 0 {
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

// deferHeap orders deferred envelopes by their next attempt.
type deferHeap []*envState

func (h deferHeap) Len() int           { return len(h) }
func (h deferHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h deferHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *deferHeap) Push(x any) {
	e := x.(*envState)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *deferHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.heapIdx = -1
	*h = old[:len(old)-1]
	return e
}

// slotter is implemented by deliverers that know destinations;
// *delivery.Agent is one. Slots names the destination a domain's mail
// goes to (several domains may share one) and how many deliveries to it
// are worth having in progress at once, without waiting or DNS.
type slotter interface {
	Slots(domain string) (dest string, n int)
}

// admission keeps the deliveries in progress to each destination within
// its slots and sets the rest of its due envelopes aside, in order, so
// that a destination which is slow, dead or at its connection limit
// holds a few of the group's runners and never all of them, and an
// envelope never waits inside delivery for a connection when another
// destination's could go. A delivery that ends lets the next envelope
// set aside for its destination back into the ready ring.
type admission struct {
	active map[string]int         // deliveries in progress, per destination
	parked map[string][]*envState // due envelopes set aside, per destination
}

// admit reports whether a delivery of e may start now, counting it under
// its destination (returned) if so and setting e aside if not. Without a
// slotter everything is admitted, under no destination. Called with g.mu
// held.
func (g *group) admit(e *envState) (string, bool) {
	s, ok := g.deliverer.(slotter)
	if !ok {
		return "", true
	}
	a := &g.adm
	if a.active == nil {
		a.active, a.parked = map[string]int{}, map[string][]*envState{}
	}
	key, n := s.Slots(e.domain)
	if a.active[key] >= max(n, 1) {
		a.parked[key] = append(a.parked[key], e)
		return "", false
	}
	a.active[key]++
	return key, true
}

// unadmit uncounts a delivery to key. Called with g.mu held.
func (g *group) unadmit(key string) {
	a := &g.adm
	if a.active[key]--; a.active[key] <= 0 {
		delete(a.active, key)
	}
}

// finished ends a delivery to key for admission: as many envelopes set
// aside for key as it now has slots for go back to the ready ring, at
// least one when none is in progress, and all of them when their domain
// has moved to another destination. Envelopes are only set aside under a
// key with a delivery in progress, so none is ever left without one that
// will release it.
func (g *group) finished(key string) {
	if key == "" {
		return
	}
	g.mu.Lock()
	g.unadmit(key)
	a := &g.adm
	waiting := a.parked[key]
	if len(waiting) == 0 {
		g.mu.Unlock()
		return
	}
	now, n := g.deliverer.(slotter).Slots(waiting[0].domain)
	free := max(n-a.active[key], 0)
	switch {
	case now != key:
		// The domain's mail goes to another destination now (its MX
		// became known): nothing more will end under key, so all of
		// them go back, to be admitted or set aside under their own.
		free = len(waiting)
	case a.active[key] == 0:
		free = max(free, 1)
	}
	free = min(free, len(waiting))
	for _, w := range waiting[:free] {
		g.ready.push(w)
	}
	if free == len(waiting) {
		delete(a.parked, key)
	} else {
		clear(waiting[:free])
		a.parked[key] = waiting[free:]
	}
	g.mu.Unlock()
	if free > 0 {
		g.cond.Broadcast()
	}
}

// setAside counts the envelopes waiting for a slot of their destination.
// Called with g.mu held.
func (g *group) setAside() int {
	n := 0
	for _, w := range g.adm.parked {
		n += len(w)
	}
	return n
}
