package queuegroups

import (
	"context"
	"testing"
	"time"

	"fanmail/envelope"
)

// Recipients given up on at the queue lifetime are counted per group.
func TestExpiredCounted(t *testing.T) {
	t.Parallel()
	rec := newRecorder(func(string, int) envelope.Status { return envelope.Deferred })
	cfg := testConfig(t.TempDir())
	cfg.QueueReturn = 50 * time.Millisecond
	q := started(t, cfg, rec)
	if err := q.Enqueue(context.Background(), testMessage(NewIDSource(), 2, 3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "message to expire", func() bool { return q.Stats().Messages == 0 })
	// The DSN, to the sender, goes through the control group and is
	// deferred there too.
	if got := q.Expired(); got[DefaultGroup] != 6 {
		t.Errorf("expired %v, want 6 in %s", got, DefaultGroup)
	}
}
