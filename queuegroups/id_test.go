package queuegroups

import (
	"strings"
	"testing"
	"time"
)

// TestIDsSortByMillisecond: an ID made in a later millisecond sorts after
// every ID made before it, in plain byte order, and IDs are unique.
func TestIDsSortByMillisecond(t *testing.T) {
	t.Parallel()
	ids := NewIDSource()
	seen := map[string]bool{}
	prev := ""
	for i := 0; i < 5; i++ {
		batch := []string{ids.Next(), ids.Next(), ids.Next()}
		for _, id := range batch {
			if len(id) != 16 || strings.Trim(id, idAlphabet) != "" {
				t.Fatalf("ID %q: want 16 characters of %s", id, idAlphabet)
			}
			if seen[id] {
				t.Fatalf("ID %q handed out twice", id)
			}
			seen[id] = true
			if id <= prev {
				t.Errorf("ID %q sorts before %q, made a millisecond or more earlier", id, prev)
			}
		}
		prev = max(batch[0], batch[1], batch[2])
		time.Sleep(2 * time.Millisecond)
	}
}

// TestNodeIDs: IDs of a node carry its name after a dot, still sort by
// time across nodes, and read back with Node and validID.
func TestNodeIDs(t *testing.T) {
	t.Parallel()
	a, b := NewNodeIDSource("mx1.example.org"), NewNodeIDSource("mx2")
	first := a.Next()
	time.Sleep(2 * time.Millisecond)
	second := b.Next()
	if !strings.HasSuffix(first, ".mx1.example.org") || !strings.HasSuffix(second, ".mx2") {
		t.Fatalf("IDs %q, %q lack their node names", first, second)
	}
	if second <= first {
		t.Errorf("ID %q of a later millisecond sorts before %q", second, first)
	}
	for id, want := range map[string]string{first: "mx1.example.org", second: "mx2", NewIDSource().Next(): ""} {
		if got := Node(id); got != want {
			t.Errorf("Node(%q) = %q, want %q", id, got, want)
		}
		if !validID(id) {
			t.Errorf("validID(%q) = false", id)
		}
	}
	for _, bad := range []string{"0123456789ABCDEF.", "0123456789ABCDEF.m x", "0123456789ABCDE.mx1", "0123456789ABCDEF." + strings.Repeat("n", 64)} {
		if validID(bad) {
			t.Errorf("validID(%q) = true", bad)
		}
	}
}
