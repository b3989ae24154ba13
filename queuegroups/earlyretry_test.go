package queuegroups_test

import (
	"context"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"fanmail/delivery"
	"fanmail/internal/fakenet"
	"fanmail/queuegroups"
)

// earlyQueue opens a started spool over the real delivery agent with
// dcfg, whose first retry after a deferral is an hour away: anything
// delivered within a test was tried again by delivery's own schedule
// (RetryAfter), never by the queue's generic backoff.
func earlyQueue(t *testing.T, dcfg delivery.Config) (*queuegroups.Queue, *delivery.Agent) {
	t.Helper()
	agent, err := delivery.New(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close() })
	return startSpool(t, hourSpool(t, 8), agent, time.Second), agent
}

// hourSpool is the configuration of a spool in a new directory with
// runners in its default group and a control group, whose first retry
// after a deferral is an hour away, so that nothing a test sees
// delivered was retried by the queue's own backoff.
func hourSpool(t *testing.T, runners int) queuegroups.Config {
	dir := t.TempDir()
	return queuegroups.Config{
		Groups: []queuegroups.GroupConfig{
			{Name: queuegroups.DefaultGroup, Dirs: []string{filepath.Join(dir, "default")}, Runners: runners},
			{Name: queuegroups.ControlGroup, Dirs: []string{filepath.Join(dir, "control")}, Runners: 1},
		},
		RetryMin: time.Hour, RetryMax: time.Hour, QueueReturn: 24 * time.Hour,
		Logger: slog.New(slog.DiscardHandler),
	}
}

// startSpool opens cfg over d and starts it. When the test ends it is
// closed, interrupting what is still being delivered after closeWait
// (0: waiting for all of it).
func startSpool(t *testing.T, cfg queuegroups.Config, d queuegroups.Deliverer, closeWait time.Duration) *queuegroups.Queue {
	t.Helper()
	q, err := queuegroups.Open(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if closeWait > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, closeWait)
			defer cancel()
		}
		q.Close(ctx)
	})
	q.Start()
	return q
}

// TestThrottlingReceiverLearnedAndPaced: a receiver like the big
// providers (421 at the greeting past 3 sessions from one address, 421
// to the third MAIL FROM on a connection) gets one post of 30 envelopes
// through the spool with more connections allowed than it takes. Its
// 421s are retried on the connections it still accepts, within seconds:
// everything arrives although the queue's first retry is an hour away.
// The limits it taught are kept: a second post draws no 421 of either
// kind, and never more than 3 sessions at once.
func TestThrottlingReceiverLearnedAndPaced(t *testing.T) {
	t.Parallel()
	n := newNetOpts(t, map[string]fakenet.SinkOptions{"giant.test": {MaxConnsPerIP: 3, MaxMsgsPerConn: 2,
		DataHook: func(fakenet.Delivery) error { time.Sleep(2 * time.Millisecond); return nil }}})
	q, agent := earlyQueue(t, delivery.Config{
		Resolvers: []string{n.dns.Addr()}, Port: n.port, HELO: "fanmail.test",
		MaxConns: 8, InitialConcurrency: 8,
		ThrottlePause: 10 * time.Millisecond, ThrottlePauseMax: 100 * time.Millisecond,
	})
	sink := n.sinks["giant.test"]
	ids := queuegroups.NewIDSource()
	if err := q.Enqueue(context.Background(), message(ids, "giant.test", 30)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first post", func() bool { return sink.RecipientsDelivered() == 30 })
	first := sink.Stats()
	t.Logf("first post: %d connections, %d refused at the greeting, %d 421s past 2 messages, at most %d sessions",
		first.Connections, first.Rejected, first.Throttled, first.MaxConcurrentConns)
	s, _ := agent.Destination("giant.test")
	if s.MaxConns < 1 || s.MaxConns > 3 || s.TxnsPerConn != 2 {
		t.Errorf("learned %d sessions and %d transactions per connection; want 1..3 and 2", s.MaxConns, s.TxnsPerConn)
	}

	if err := q.Enqueue(context.Background(), message(ids, "giant.test", 30)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the second post", func() bool { return sink.RecipientsDelivered() == 60 })
	second := sink.Stats()
	if second.Rejected != first.Rejected || second.Throttled != first.Throttled {
		t.Errorf("second post drew %d more 421s at the greeting and %d more past 2 messages; want none once learned",
			second.Rejected-first.Rejected, second.Throttled-first.Throttled)
	}
	if second.MaxConcurrentConns > 3 {
		t.Errorf("the receiver had %d sessions at once; it allows 3", second.MaxConcurrentConns)
	}
	if d := second.Duplicates; d != 0 {
		t.Errorf("%d duplicates", d)
	}
}

// TestGreylistedRecipientsRetriedEarly: recipients a receiver greylists
// are tried again on delivery's greylisting schedule, counted from their
// first greylisting, not at the queue's first retry (an hour here): the
// post arrives, each recipient greylisted exactly once, since the
// retry comes after the receiver's window.
func TestGreylistedRecipientsRetriedEarly(t *testing.T) {
	t.Parallel()
	n := newNetOpts(t, map[string]fakenet.SinkOptions{"grey.test": {Greylist: 200 * time.Millisecond}})
	q, _ := earlyQueue(t, delivery.Config{
		Resolvers: []string{n.dns.Addr()}, Port: n.port, HELO: "fanmail.test",
		GreylistRetry: 300 * time.Millisecond, GreylistRetryMax: time.Minute,
	})
	sink := n.sinks["grey.test"]
	ids := queuegroups.NewIDSource()
	if err := q.Enqueue(context.Background(), message(ids, "grey.test", 12)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the greylisted post", func() bool { return sink.RecipientsDelivered() == 12 })
	if st := sink.Stats(); st.Greylisted != 12 {
		t.Errorf("%d greylistings for 12 recipients; want each greylisted once, then retried after the window", st.Greylisted)
	}
}

// newNetOpts is newNet with options per domain: one sink each on a
// shared port, the domain's MX pointing at it.
func newNetOpts(t *testing.T, opts map[string]fakenet.SinkOptions) *tnet {
	t.Helper()
	return newNetAt(t, 60, slices.Collect(maps.Keys(opts)), func(dom string) fakenet.SinkOptions { return opts[dom] })
}
