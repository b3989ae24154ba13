package queuegroups

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/testutil"
)

// randomBytes returns n bytes that do not compress or repeat.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestBodySpillsOverMemory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q := opened(t, testConfig(dir), newRecorder(nil))
	for _, n := range []int{0, 1, bodyMemory - 1, bodyMemory, bodyMemory + 1, 3*bodyMemory + 17, 2 << 20} {
		want := randomBytes(n, uint64(n))
		b := q.NewBody()
		// Part by ReadFrom, as ingress fills it, part by Write.
		half := n / 2
		if _, err := b.ReadFrom(bytes.NewReader(want[:half])); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write(want[half:]); err != nil {
			t.Fatal(err)
		}
		if b.Size() != int64(n) {
			t.Fatalf("%d bytes: Size %d", n, b.Size())
		}
		got, err := io.ReadAll(envelope.Reader(b))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: read back %d bytes, %v", n, len(got), err)
		}
		for _, off := range []int64{0, bodyMemory - 3, bodyMemory, int64(n) - 5} {
			if off < 0 || off >= int64(n) {
				continue
			}
			p := make([]byte, 10)
			k, err := b.ReadAt(p, off)
			wantN := min(10, n-int(off))
			if k != wantN || !bytes.Equal(p[:k], want[off:off+int64(k)]) || (k < 10 && err != io.EOF) {
				t.Errorf("%d bytes: ReadAt(10, %d) = %d, %v", n, off, k, err)
			}
		}
		if n > bodyMemory && b.file == nil {
			t.Errorf("%d bytes held without a spill file", n)
		}
		if n <= bodyMemory && b.file != nil {
			t.Errorf("%d bytes spilled although they fit in memory", n)
		}
		b.Close()
	}
	// The spill files were unlinked from the start: only the journal
	// and the lock are in the directory.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), segmentSuffix) && e.Name() != "lock" && e.Name() != "control" {
			t.Errorf("unexpected file %s in the queue directory", e.Name())
		}
	}
}

// TestBigBodyStreamsThroughTheJournal queues a body bigger than the
// writer's chunk, spilled to a file, delivers it intact, and after a
// restart (replay checks the record's checksum over the streamed body)
// delivers a second copy that was deferred, intact as well.
func TestBigBodyStreamsThroughTheJournal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := append([]byte("Subject: big\r\n\r\n"), randomBytes(streamChunk*3+1234, 7)...)
	deferred := ""
	rec := newRecorder(deferring(&deferred))
	cfg := testConfig(dir)
	cfg.RetryMin, cfg.RetryMax, cfg.QueueReturn = time.Hour, time.Hour, 24*time.Hour
	var log testutil.SyncBuffer
	cfg.Logger = textLogger(&log)
	defer func() {
		if t.Failed() {
			t.Log(log.String())
		}
	}()
	q := started(t, cfg, rec)
	ids := NewIDSource()
	m := testMessage(ids, 2, 1)
	deferred = m.Parts[0].Envelopes[1].Recipients[0]
	body := q.NewBody()
	if _, err := body.ReadFrom(bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	m.Body = body
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	body.Close() // the queue keeps its own copy
	first := m.Parts[0].Envelopes[0].Recipients[0]
	waitFor(t, "first attempts", func() bool { s := q.Stats(); return s.Deferred == 1 && s.Inflight == 0 })
	prefix := "List-Id: <list.example.org>\r\n"
	if got := rec.body(first); got != prefix+string(want) {
		t.Fatalf("delivered %d bytes, want the %d byte post intact", len(got), len(prefix)+len(want))
	}
	q.Close(context.Background())

	second := newRecorder(nil)
	q2 := started(t, cfg, second)
	if s := q2.Stats(); s.Recipients != 1 {
		t.Fatalf("recovered %+v, want the deferred recipient", s)
	}
	q2.Flush("", "")
	waitFor(t, "delivery after restart", func() bool { return q2.Stats().Messages == 0 })
	if got := second.body(deferred); got != prefix+string(want) {
		t.Errorf("after restart delivered %d bytes, want the post intact", len(got))
	}
}
