package moderation

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fanmail/internal/pgtest"
	"fanmail/lists"
)

// TestNodesSQLite and TestNodesPostgres: two nodes, each with its own
// queue and mailbox, share one list store. Whatever both runners scan at
// once, the moderator is notified once and an approved post goes out
// once; and each node settles only its own claims after a crash.
func TestNodesSQLite(t *testing.T) {
	t.Parallel()
	testNodes(t, filepath.Join(t.TempDir(), "lists.db"))
}

func TestNodesPostgres(t *testing.T) {
	t.Parallel()
	testNodes(t, pgtest.Start(t).NewDatabase(t))
}

func testNodes(t *testing.T, target string) {
	ctx := context.Background()
	a := newNode(t, target, "a", "mod@example.org")
	b := newNode(t, target, "b")
	ra, rb := a.runner(), b.runner()
	both := func() {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, r := range []*Runner{ra, rb} {
			wg.Go(func() { errs[i] = r.Scan(ctx) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for round := range 5 {
		held := a.post(outsider, outsider).Stored[0]
		both()
		both()
		a.queue.Flush("", "")
		b.queue.Flush("", "")
		waitTotal(t, a, b, "mod@example.org", round+1)
		if _, err := b.store.Decide(ctx, held, lists.Decision{Action: "approve", By: "cli:test"}); err != nil {
			t.Fatal(err)
		}
		both()
		both()
		a.queue.Flush("", "")
		b.queue.Flush("", "")
		waitTotal(t, a, b, member, round+1)
	}

	// A crash of a leaves its claim; b's start does not touch it, a's
	// gives it up, and the post then goes out once.
	held := b.post(outsider, outsider).Stored[0]
	if _, err := a.store.Decide(ctx, held, lists.Decision{Action: "approve", By: "cli:test"}); err != nil {
		t.Fatal(err)
	}
	claim := a.ids.Next()
	if got, err := a.store.Claim(ctx, held, claim); err != nil || !got {
		t.Fatal(got, err)
	}
	if err := rb.recover(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := b.store.GetPost(ctx, held); err != nil || p.Claim != claim {
		t.Fatalf("b settled a's claim: %+v, %v", p, err)
	}
	if err := ra.recover(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := a.store.GetPost(ctx, held); err != nil || p.Claim != "" {
		t.Fatalf("a did not give up its own claim: %+v, %v", p, err)
	}
	both()
	waitTotal(t, a, b, member, 6)
}

// waitTotal waits until rcpt has n messages in the two mailboxes
// together, and fails if more come.
func waitTotal(t *testing.T, a, b *world, rcpt string, n int) {
	t.Helper()
	for range 2000 {
		if len(a.box.messages(rcpt))+len(b.box.messages(rcpt)) >= n {
			break
		}
		sleepBriefly()
	}
	time.Sleep(50 * time.Millisecond) // would-be extra copies show up
	if got := len(a.box.messages(rcpt)) + len(b.box.messages(rcpt)); got != n {
		t.Fatalf("%s has %d messages on the two nodes, want %d\n%s\n%s", rcpt, got, n, a.logs, b.logs)
	}
}

func sleepBriefly() { time.Sleep(5 * time.Millisecond) }

// TestStoreOutageLoggedOnce: a store that stops answering (here: closed)
// is one error line for the outage, not one per poll or heartbeat.
func TestStoreOutageLoggedOnce(t *testing.T) {
	t.Parallel()
	w := newNode(t, "", "n1")
	r := New(Config{Store: w.store, Expander: w.exp, Queue: w.queue, IDs: w.ids, Poll: 5 * time.Millisecond,
		HeartbeatEvery: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(w.logs, nil))})
	w.store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	r.Run(ctx)
	for _, line := range []string{"list store unreachable", "cannot settle claims", "cannot record this node's start",
		"cannot record this node's clean stop"} {
		if n := strings.Count(w.logs.String(), line); n != 1 {
			t.Errorf("%q logged %d times in 40 polls, want once:\n%s", line, n, w.logs)
		}
	}
}
