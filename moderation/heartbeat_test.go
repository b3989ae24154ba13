package moderation

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/lists"
)

// TestHeartbeat: a running Runner records its node's start, then its
// heartbeat at the clock's time, and its clean stop when it ends; a
// Runner of a node without a name records nothing.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	w := newNode(t, "", "n1")
	start := w.clock.Now()
	r := New(Config{Store: w.store, Expander: w.exp, Queue: w.queue, IDs: w.ids, Hostname: "fanmail.test",
		Now: w.clock.Now, Version: "v9", HeartbeatEvery: time.Millisecond, Logger: slog.New(slog.NewTextHandler(w.logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	// Seen at start, then at each heartbeat.
	wantSeen := func(at time.Time) lists.Node {
		t.Helper()
		for range 2000 {
			n, err := w.store.FindNode(ctx, "n1")
			if err == nil && n.LastSeen.Equal(at.Truncate(time.Second)) {
				return n
			}
			if err != nil && !errors.Is(err, lists.ErrNoNode) {
				t.Fatal(err)
			}
			sleepBriefly()
		}
		t.Fatalf("node n1 never seen at %v\n%s", at, w.logs)
		return lists.Node{}
	}
	n := wantSeen(start)
	if !n.Alive(start) || n.Version != "v9" || !n.Started.Equal(start.Truncate(time.Second)) {
		t.Errorf("node at start: %+v", n)
	}
	w.clock.Advance(time.Minute)
	wantSeen(w.clock.Now())
	w.clock.Advance(time.Minute)
	cancel()
	<-done
	n, err := w.store.FindNode(context.Background(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	want := lists.Node{Name: "n1", Version: "v9", Started: start.Truncate(time.Second),
		LastSeen: w.clock.Now().Truncate(time.Second), Stopped: true}
	if diff := cmp.Diff(want, n); diff != "" {
		t.Errorf("node after a clean stop (-want +got):\n%s", diff)
	}
	if n.Alive(w.clock.Now()) {
		t.Errorf("a node stopped cleanly is alive")
	}

	// No name, no record.
	unnamed := newWorld(t)
	ctx, cancel = context.WithCancel(context.Background())
	r = New(Config{Store: unnamed.store, Expander: unnamed.exp, Queue: unnamed.queue, IDs: unnamed.ids,
		HeartbeatEvery: time.Millisecond, Poll: time.Millisecond})
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	r.Run(ctx)
	if nodes, err := unnamed.store.Nodes(context.Background()); err != nil || len(nodes) != 0 {
		t.Errorf("a node without a name recorded %v, %v", nodes, err)
	}
}
