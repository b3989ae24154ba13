package lists

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testNodes: a node's start, heartbeats and clean stop are what Nodes
// and FindNode return, and Alive follows them; a heartbeat from a node
// the store never saw start records it; an unknown name is ErrNoNode.
func testNodes(t *testing.T, be backend) {
	ctx := t.Context()
	s, target := be.openNew(t)
	other := be.open(t, target) // another process on the same store
	t0 := time.Unix(1_800_000_000, 0)
	if got, err := s.Nodes(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Nodes of a new store: %v, %v", got, err)
	}
	if _, err := s.FindNode(ctx, "a"); !errors.Is(err, ErrNoNode) {
		t.Fatalf("FindNode of an unknown node: %v, want ErrNoNode", err)
	}
	v0, err := s.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.NodeStarted(ctx, "b", "v1", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, "b", t0.Add(HeartbeatEvery)); err != nil {
		t.Fatal(err)
	}
	if err := other.Heartbeat(ctx, "a", t0.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if be.name == "postgres" {
		// Heartbeats are not changes: every node's caches stay.
		if v, err := s.Version(ctx); err != nil || v != v0 {
			t.Errorf("Version after heartbeats: %d, %v; want %d", v, err, v0)
		}
	}
	want := []Node{
		{Name: "a", Started: t0.Add(5 * time.Second), LastSeen: t0.Add(5 * time.Second)},
		{Name: "b", Version: "v1", Started: t0, LastSeen: t0.Add(HeartbeatEvery)},
	}
	got, err := other.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Nodes (-want +got):\n%s", diff)
	}

	// b stops cleanly: down at once; a, silent, is alive until GoneAfter.
	stop := t0.Add(12 * time.Second)
	if err := s.NodeStopped(ctx, "b", stop); err != nil {
		t.Fatal(err)
	}
	b, err := other.FindNode(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Node{Name: "b", Version: "v1", Started: t0, LastSeen: stop, Stopped: true}, b); diff != "" {
		t.Errorf("FindNode after the stop (-want +got):\n%s", diff)
	}
	a, err := other.FindNode(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		n     Node
		at    time.Time
		alive bool
	}{
		{b, stop, false},
		{a, a.LastSeen, true},
		{a, a.LastSeen.Add(-time.Minute), true}, // a clock behind a's
		{a, a.LastSeen.Add(GoneAfter - time.Second), true},
		{a, a.LastSeen.Add(GoneAfter), false},
	} {
		if got := tt.n.Alive(tt.at); got != tt.alive {
			t.Errorf("%s.Alive(last seen %+v): %v, want %v", tt.n.Name, tt.at.Sub(tt.n.LastSeen), got, tt.alive)
		}
	}

	// b starts again: running, a new start, the version it runs.
	restart := t0.Add(time.Hour)
	if err := other.NodeStarted(ctx, "b", "v2", restart); err != nil {
		t.Fatal(err)
	}
	if b, err = s.FindNode(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Node{Name: "b", Version: "v2", Started: restart, LastSeen: restart}, b); diff != "" {
		t.Errorf("FindNode after the restart (-want +got):\n%s", diff)
	}
	if !b.Alive(restart) {
		t.Errorf("a node just started is not alive")
	}
}
