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
	q := expired(t, 2, 3)
	// The DSN, to the sender, goes through the control group and is
	// deferred there too.
	if got := q.Expired(); got[DefaultGroup] != 6 {
		t.Errorf("expired %v, want 6 in %s", got, DefaultGroup)
	}
}

// expired queues a message to domains×perDomain recipients, whom every
// attempt defers, on a spool with a 50ms queue lifetime, and waits until
// the message has expired.
func expired(t *testing.T, domains, perDomain int) *Queue {
	t.Helper()
	rec := newRecorder(func(string, int) envelope.Status { return envelope.Deferred })
	cfg := testConfig(t.TempDir())
	cfg.QueueReturn = 50 * time.Millisecond
	q := started(t, cfg, rec)
	if err := q.Enqueue(context.Background(), testMessage(NewIDSource(), domains, perDomain)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "message to expire", func() bool { return q.Stats().Messages == 0 })
	return q
}
