package queuegroups

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestTimeHeap: items come out earliest first, each knows its position
// while in the heap and -1 once out, and one taken from the middle is
// never popped.
func TestTimeHeap(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	start := time.Unix(1_700_000_000, 0)
	envs := make([]*envState, 500)
	var h timeHeap[*envState]
	for i := range envs {
		envs[i] = &envState{index: i, heapIdx: -1, next: start.Add(time.Duration(rng.IntN(100)) * time.Second)}
		h.push(envs[i], envs[i].next, &envs[i].heapIdx)
	}
	checkPositions := func() {
		t.Helper()
		for i, x := range h {
			if *x.pos != i {
				t.Fatalf("item at %d keeps position %d", i, *x.pos)
			}
		}
	}
	checkPositions()
	removed := map[int]bool{}
	for i := 0; i < len(envs); i += 7 {
		h.remove(&envs[i].heapIdx)
		h.remove(&envs[i].heapIdx) // a second time: no longer there, nothing happens
		removed[i] = true
		if envs[i].heapIdx != -1 {
			t.Fatalf("removed item keeps position %d", envs[i].heapIdx)
		}
	}
	checkPositions()
	var want []time.Time
	for i, e := range envs {
		if !removed[i] {
			want = append(want, e.next)
		}
	}
	slices.SortFunc(want, time.Time.Compare)
	if _, ok := h.popDue(start.Add(-time.Second)); ok {
		t.Fatal("popDue took an item before it was due")
	}
	var got []time.Time
	for h.Len() > 0 {
		if h.first() != want[len(got)] {
			t.Fatalf("first = %v, want %v", h.first(), want[len(got)])
		}
		e, ok := h.popDue(want[len(got)])
		if !ok || removed[e.index] || e.heapIdx != -1 {
			t.Fatalf("popDue = %+v, %v", e, ok)
		}
		got = append(got, e.next)
		checkPositions()
	}
	if !slices.Equal(got, want) {
		t.Errorf("popped out of order:\n got %v\nwant %v", got, want)
	}
}
