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
