// Package memlimit keeps the process's soft memory limit at a floor, but
// never below twice the live heap: a server whose live heap outgrows the
// floor (many big lists cached, a huge aliases file) is then collected
// as Go's default would (GOGC 100) instead of without pause.
package memlimit

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// liveHeap is the heap the last collection found in use.
const liveHeap = "/gc/heap/live:bytes"

// Keeper holds a soft memory limit at max(floor, 2 × live heap).
type Keeper struct {
	floor  int64
	log    *slog.Logger
	sample []metrics.Sample
	limit  int64 // the limit last set
}

// New sets the limit to floor (or twice the live heap, if more) and
// returns the Keeper that holds it there.
func New(floor int64, log *slog.Logger) *Keeper {
	k := &Keeper{floor: floor, log: log, sample: []metrics.Sample{{Name: liveHeap}}}
	k.Adjust()
	return k
}

// Limit is the limit in force.
func (k *Keeper) Limit() int64 { return k.limit }

// Adjust sets the limit from the live heap the last collection found.
func (k *Keeper) Adjust() {
	metrics.Read(k.sample)
	var live int64
	if k.sample[0].Value.Kind() == metrics.KindUint64 {
		live = int64(k.sample[0].Value.Uint64())
	}
	want := max(k.floor, 2*live)
	if want == k.limit {
		return
	}
	if k.log != nil && (want > k.floor) != (k.limit > k.floor) {
		if want > k.floor {
			k.log.Warn("live heap past half the memory limit: the limit follows it", "live_mb", live>>20,
				"memory_limit_mb", k.floor>>20, "now_mb", want>>20)
		} else if k.limit != 0 {
			k.log.Info("live heap back under half the memory limit", "live_mb", live>>20, "memory_limit_mb", k.floor>>20)
		}
	}
	debug.SetMemoryLimit(want)
	k.limit = want
}

// Run adjusts the limit every interval until ctx ends.
func (k *Keeper) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			k.Adjust()
		case <-ctx.Done():
			return
		}
	}
}
