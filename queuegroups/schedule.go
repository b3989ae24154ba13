package queuegroups

// readyRing holds the messages with envelopes due, round-robin, so a
// small post starts delivering while a huge fan-out is still in
// progress. A message's due envelopes are those retried or passed over
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

// holdHeap orders queue-only messages by when their fresh envelopes are
// due (the group's interval after they were queued).
type holdHeap []*msgState

func (h holdHeap) Len() int           { return len(h) }
func (h holdHeap) Less(i, j int) bool { return h[i].holdUntil.Before(h[j].holdUntil) }
func (h holdHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].holdIdx = i
	h[j].holdIdx = j
}
func (h *holdHeap) Push(x any) {
	m := x.(*msgState)
	m.holdIdx = len(*h)
	*h = append(*h, m)
}
func (h *holdHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	m.holdIdx = -1
	*h = old[:len(old)-1]
	return m
}
