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
