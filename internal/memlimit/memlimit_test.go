package memlimit

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// The limit stays at its floor while the live heap is small, follows
// twice the live heap once that is more, and comes back down after.
func TestLimitFollowsLiveHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const floor = 8 << 20
	runtime.GC()
	k := New(floor, nil)
	if k.Limit() != max(floor, 2*live(t)) {
		t.Fatalf("limit %d with a live heap of %d, want max(%d, twice the heap)", k.Limit(), live(t), floor)
	}
	if got := debug.SetMemoryLimit(-1); got != k.Limit() {
		t.Fatalf("runtime limit %d, keeper says %d", got, k.Limit())
	}
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = 1
	}
	runtime.GC()
	k.Adjust()
	if k.Limit() < 2*int64(len(big)) {
		t.Errorf("limit %d with 64 MB live, want at least twice that", k.Limit())
	}
	runtime.KeepAlive(big)
	big = nil
	runtime.GC()
	k.Adjust()
	if k.Limit() >= 2*(64<<20) {
		t.Errorf("limit %d after the 64 MB went, want back near the floor", k.Limit())
	}
	if got := debug.SetMemoryLimit(-1); got != k.Limit() {
		t.Errorf("runtime limit %d, keeper says %d", got, k.Limit())
	}
}

func live(t *testing.T) int64 {
	t.Helper()
	s := []metrics.Sample{{Name: liveHeap}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}
