package delivery

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/fakenet"

	"github.com/emersion/go-smtp"
)

// deliverAll runs n one-recipient deliveries to example.test at once and
// returns how many were delivered.
func deliverConcurrently(t *testing.T, a *Agent, n int) int {
	t.Helper()
	var wg sync.WaitGroup
	var delivered atomic.Int64
	for i := range n {
		wg.Go(func() {
			res := a.Deliver(ctxT(t), request("example.test", fmt.Sprint("r", i)))
			if res[0].Status == envelope.Delivered {
				delivered.Add(1)
			} else {
				t.Errorf("envelope %d: %+v", i, res[0])
			}
		})
	}
	wg.Wait()
	return int(delivered.Load())
}

// TestNeverMoreSessionsThanAllowed: with the window at a receiver's limit
// on sessions from one address, and the receiver closing each connection
// after two messages, the churn of closing and opening connections never
// puts one more session at the receiver: a slot is only reused once the
// server has closed its side. The limit on messages is learned on the
// way and costs no recipient a deferral.
func TestNeverMoreSessionsThanAllowed(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, func(cfg *Config) {
		cfg.MaxConns, cfg.InitialConcurrency = 4, 4
	}, fakenet.SinkOptions{MaxConnsPerIP: 4, MaxMsgsPerConn: 2,
		DataHook: func(fakenet.Delivery) error { time.Sleep(2 * time.Millisecond); return nil }})
	if got := deliverConcurrently(t, a, 60); got != 60 {
		t.Fatalf("delivered %d of 60", got)
	}
	st := w.sinks[0].Stats()
	t.Logf("60 envelopes: %d connections, at most %d open at once, %d refused, %d 421s past 2 messages",
		st.Connections, st.MaxOpenConns, st.Rejected, st.Throttled)
	if st.MaxOpenConns > 4 || st.Rejected != 0 {
		t.Errorf("the receiver saw up to %d connections at once and refused %d; it allows 4", st.MaxOpenConns, st.Rejected)
	}
	if s, _ := a.Destination("example.test"); s.TxnsPerConn != 2 {
		t.Errorf("learned transactions per connection = %d, want 2", s.TxnsPerConn)
	}
	if st.Throttled > 4 {
		t.Errorf("%d 421s past the messages per connection: the limit was not learned from the first", st.Throttled)
	}
}

// TestLearnsSessionsPerAddress: a receiver that allows fewer sessions
// than the window refuses the extra ones at the greeting; the group
// learns a cap no higher than the receiver's, and the refused deliveries
// wait for a connection of their own group instead of being deferred.
func TestLearnsSessionsPerAddress(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, func(cfg *Config) {
		cfg.MaxConns, cfg.InitialConcurrency = 8, 8
	}, fakenet.SinkOptions{MaxConnsPerIP: 3,
		DataHook: func(fakenet.Delivery) error { time.Sleep(5 * time.Millisecond); return nil }})
	if got := deliverConcurrently(t, a, 40); got != 40 {
		t.Fatalf("delivered %d of 40", got)
	}
	s, _ := a.Destination("example.test")
	st := w.sinks[0].Stats()
	t.Logf("learned %d sessions; receiver refused %d at the greeting", s.MaxConns, st.Rejected)
	if s.MaxConns < 1 || s.MaxConns > 3 || s.Window > 3 {
		t.Errorf("learned cap %d, window %d; want 1..3", s.MaxConns, s.Window)
	}
	before := st.Rejected
	if got := deliverConcurrently(t, a, 20); got != 20 {
		t.Fatalf("delivered %d of 20", got)
	}
	if st := w.sinks[0].Stats(); st.Rejected != before {
		t.Errorf("%d more refusals after the cap was learned", st.Rejected-before)
	}
}

// TestTooManyRecipientsGoInTheNextTransaction: a 452 4.5.3 after some
// recipients were accepted sends the rest in the next transaction at
// once, and the group learns the limit.
func TestTooManyRecipientsGoInTheNextTransaction(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, nil, fakenet.SinkOptions{MaxRcpts: 30})
	rcpts := func(prefix string) []string {
		var out []string
		for i := range 100 {
			out = append(out, fmt.Sprintf("%s%d", prefix, i))
		}
		return out
	}
	checkBriefs(t, repeat(sent, 100), a.Deliver(ctxT(t), request("example.test", rcpts("a")...)))
	st := w.sinks[0].Stats()
	if st.Transactions != 4 || st.TooManyRcpts != 70 {
		t.Errorf("first envelope: %d transactions, %d 452s; want 4 (30+30+30+10) and 70 (the first transaction's)", st.Transactions, st.TooManyRcpts)
	}
	if s, _ := a.Destination("example.test"); s.RcptsPerTxn != 30 {
		t.Errorf("learned recipients per transaction = %d, want 30", s.RcptsPerTxn)
	}
	checkBriefs(t, repeat(sent, 100), a.Deliver(ctxT(t), request("example.test", rcpts("b")...)))
	if st2 := w.sinks[0].Stats(); st2.TooManyRcpts != st.TooManyRcpts || st2.Transactions != 8 {
		t.Errorf("second envelope: %d more 452s and %d transactions; want none and 4", st2.TooManyRcpts-st.TooManyRcpts, st2.Transactions-st.Transactions)
	}
}

// TestThrottle421RetriedWithinTheDelivery: a receiver shedding load with
// a 421 at the greeting gets the delivery again after a short pause, in
// the same Deliver; one that keeps refusing gets it deferred for seconds.
func TestThrottle421RetriedWithinTheDelivery(t *testing.T) {
	t.Parallel()
	var refusals atomic.Int64
	refusals.Store(2)
	w, a := exampleAgent(t, func(cfg *Config) {
		cfg.ThrottlePause, cfg.ThrottlePauseMax = 5*time.Millisecond, 20*time.Millisecond
		cfg.ReplyRules = []ReplyRule{} // no halving: this test is about the pause
		cfg.ConnCacheSize = -1         // each delivery dials
	}, fakenet.SinkOptions{ConnHook: func(string) *smtp.SMTPError {
		if refusals.Add(-1) >= 0 {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "busy, try later"}
		}
		return nil
	}})
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "a")))
	if n := w.sinks[0].Connections(); n != 3 {
		t.Errorf("connections = %d, want 3 (two refused, one delivering)", n)
	}

	refusals.Store(100)
	res := a.Deliver(ctxT(t), request("example.test", "b"))
	checkBriefs(t, []brief{{envelope.Deferred, 421, "4.3.2"}}, res)
	if res[0].RetryAfter <= 0 || res[0].RetryAfter > time.Minute {
		t.Errorf("RetryAfter = %v, want seconds", res[0].RetryAfter)
	}
}

// TestSilentHostSuspendsItsGroup: a host that never answers a SYN times
// out after the adaptive connect timeout, which suspends its group at
// once; a delivery that was waiting for the probe (a group that has not
// answered a connect gets one) hears so without a connect of its own,
// deferred until the suspension ends with a RetryAfter, as no attempt.
func TestSilentHostSuspendsItsGroup(t *testing.T) {
	t.Parallel()
	hole, err := fakenet.NewBlackHole("127.0.0.98:0")
	if err != nil {
		t.Skipf("no black hole on this system: %v", err)
	}
	t.Cleanup(func() { hole.Close() })
	a := routedAgent(t, hole.Addr(), func(c *Config) {
		c.ConnectTimeoutMin, c.ConnectTimeout = 300*time.Millisecond, 10*time.Second
	})
	results := make(chan []envelope.Result, 2)
	for _, r := range []string{"a", "b"} {
		go func() { results <- a.Deliver(ctxT(t), request("example.test", r)) }()
	}
	var silent, suspended int
	for range 2 {
		res := <-results
		switch {
		case res[0].Enhanced == "4.4.1" && res[0].RetryAfter == 0:
			silent++ // the probe: an attempt, for the queue's backoff
		case res[0].Enhanced == "4.4.1" && res[0].RetryAfter > 0:
			suspended++
		default:
			t.Errorf("unexpected result %+v", res[0])
		}
	}
	if silent != 1 || suspended != 1 {
		t.Errorf("%d probes timed out and %d deliveries heard of the suspension; want 1 and 1", silent, suspended)
	}
	s, _ := a.Destination("example.test")
	if s.SuspendedUntil.IsZero() {
		t.Errorf("group not suspended: %+v", s)
	}
	if _, n := a.Slots("example.test"); n != 1 {
		t.Errorf("slots for a suspended group = %d, want 1", n)
	}
}

// TestSlotsFollowTheGroup: a domain whose MX is not cached is its own
// destination with one slot, a probe; once a server of its MX group has
// greeted us, the group's window counts, and once a transaction went
// through, twice the window, so the next delivery waits at each
// connection. SlotsChanged fires when they grow.
func TestSlotsFollowTheGroup(t *testing.T) {
	t.Parallel()
	_, a := exampleAgent(t, func(cfg *Config) {
		cfg.InitialConcurrency = 3
	})
	if dest, n := a.Slots("Example.TEST"); dest != "domain:example.test" || n != 1 {
		t.Errorf("before any delivery: %q, %d; want domain:example.test, 1", dest, n)
	}
	changed := a.SlotsChanged()
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "a")))
	select {
	case <-changed:
	default:
		t.Error("SlotsChanged did not fire when the group answered")
	}
	s, _ := a.Destination("example.test")
	if dest, n := a.Slots("example.test"); dest != "mx1.example.test" || n != 2*s.Window {
		t.Errorf("after a delivery: %q, %d; want mx1.example.test and twice the window %d", dest, n, s.Window)
	}
}

// TestSlowGreeterConnectionIsReused: once a group's greeting has been
// slow (a tarpit), deliveries wait for the connection it already gave us
// rather than open new ones and wait for their greetings too.
func TestSlowGreeterConnectionIsReused(t *testing.T) {
	t.Parallel()
	const slow = 500 * time.Millisecond
	w, a := exampleAgent(t, func(cfg *Config) {
		cfg.CommandTimeout = 10 * time.Second
	}, fakenet.SinkOptions{GreetDelay: slow + 200*time.Millisecond})
	a.pool.slowGreeting = slow
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "first")))
	if got := deliverConcurrently(t, a, 8); got != 8 {
		t.Fatalf("delivered %d of 8", got)
	}
	if n := w.sinks[0].Connections(); n != 1 {
		t.Errorf("the slow greeter saw %d connections, want 1: each new one costs another slow greeting", n)
	}
}
