package queuegroups

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkEnqueueParallel measures durable one-recipient enqueues from
// many concurrent sessions: group commit should put it well above the
// disk's fsync rate.
func BenchmarkEnqueueParallel(b *testing.B) {
	q, err := Open(testConfig(b.TempDir()), newRecorder(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close(context.Background())
	ids := NewIDSource()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := q.Enqueue(context.Background(), testMessage(ids, 1, 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	s := q.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/float64(max(s.Syncs, 1)), "msgs/fsync")
}

// BenchmarkFdatasync is the disk's own limit: one small append and one
// fdatasync at a time, as a design with one fsync per message would do.
func BenchmarkFdatasync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := make([]byte, 512)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Write(rec); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsyncs/s")
}

// BenchmarkDeferredHeap measures the retry schedule: ten thousand
// deferred envelopes pushed, a tenth taken out of the middle (as a
// delete does), and the rest popped when due.
func BenchmarkDeferredHeap(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	envs := make([]*envState, 10000)
	for i := range envs {
		envs[i] = &envState{heapIdx: -1, next: start.Add(time.Duration(rng.Int64N(int64(time.Hour))))}
	}
	var g group
	for b.Loop() {
		for _, e := range envs {
			g.deferred.push(e, e.next, &e.heapIdx)
		}
		for i := 0; i < len(envs); i += 10 {
			g.deferred.remove(&envs[i].heapIdx)
		}
		for g.deferred.Len() > 0 {
			g.deferred.pop()
		}
	}
}
