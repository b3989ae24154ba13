package delivery

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, nil)
	const envelopes = 10
	for i := range envelopes {
		checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", fmt.Sprint("r", i))))
	}
	st := w.sinks[0].Stats()
	if st.Connections != 1 || st.Transactions != envelopes {
		t.Errorf("%d envelopes took %d connections and %d transactions, want 1 and %d", envelopes, st.Connections, st.Transactions, envelopes)
	}
	if s, ok := a.Destination("example.test"); !ok || s.Idle != 1 || s.Open != 1 {
		t.Errorf("destination state = %+v, %v; want one idle connection", s, ok)
	}
}

func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cfg       func(*Config)
		rcpts     int
		envelopes int
		wantConns int
		wantTxns  int
	}{
		{"recipients per transaction", func(c *Config) { c.RcptsPerTxn = 50 }, 120, 1, 1, 3},
		{"transactions per connection", func(c *Config) { c.TxnsPerConn = 2 }, 1, 5, 3, 5},
		{"cache disabled", func(c *Config) { c.ConnCacheSize = -1 }, 1, 3, 3, 3},
		{"per-destination override", func(c *Config) {
			c.Destinations = []Destination{{Match: "*.example.test", RcptsPerTxn: 10}}
		}, 25, 1, 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.dns.SetMXHosts("example.test", 60, sinkIP(0))
			cfg := w.config()
			tt.cfg(&cfg)
			a := w.agent(cfg)
			for e := range tt.envelopes {
				var rcpts []string
				for i := range tt.rcpts {
					rcpts = append(rcpts, fmt.Sprintf("e%d-r%d", e, i))
				}
				checkBriefs(t, repeat(sent, tt.rcpts), a.Deliver(ctxT(t), request("example.test", rcpts...)))
			}
			st := w.sinks[0].Stats()
			if st.Connections != tt.wantConns || st.Transactions != tt.wantTxns || st.RecipientsDelivered != tt.rcpts*tt.envelopes {
				t.Errorf("connections, transactions, recipients = %d, %d, %d; want %d, %d, %d", st.Connections, st.Transactions,
					st.RecipientsDelivered, tt.wantConns, tt.wantTxns, tt.rcpts*tt.envelopes)
			}
		})
	}
}

func TestIdleTimeoutClosesCachedConnections(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, func(cfg *Config) {
		cfg.ConnIdleTimeout = 40 * time.Millisecond
	})
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "a")))
	testutil.WaitFor(t, 2*time.Second, "the idle connection to close", func() bool {
		s, _ := a.Destination("example.test")
		return s.Open == 0
	})
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "b")))
	if n := w.sinks[0].Connections(); n != 2 {
		t.Errorf("connections = %d, want 2", n)
	}
}

// TestConcurrencyCapAndMXCache runs 100 deliveries at once to domains
// sharing one MX: the server never sees more connections than the MX
// group's cap, and each name is looked up once.
func TestConcurrencyCapAndMXCache(t *testing.T) {
	t.Parallel()
	w := newWorld(t, fakenet.SinkOptions{DataHook: func(fakenet.Delivery) error {
		time.Sleep(5 * time.Millisecond)
		return nil
	}})
	for _, d := range []string{"one.test", "two.test"} {
		w.dns.SetMX(d, 300, fakenet.MX{Pref: 10, Host: "mx.provider.test"})
	}
	w.dns.SetA("mx.provider.test", 300, sinkIP(0))
	cfg := w.config()
	cfg.MaxConns = 4
	cfg.InitialConcurrency = 4
	cfg.SlotWait = 5 * time.Second
	a := w.agent(cfg)

	var wg sync.WaitGroup
	var mu sync.Mutex
	delivered := 0
	for i := range 100 {
		wg.Go(func() {
			domain := []string{"one.test", "two.test"}[i%2]
			res := a.Deliver(ctxT(t), request(domain, fmt.Sprint("r", i)))
			mu.Lock()
			defer mu.Unlock()
			if res[0].Status == envelope.Delivered {
				delivered++
			} else {
				t.Errorf("envelope %d: %+v", i, res[0])
			}
		})
	}
	wg.Wait()
	st := w.sinks[0].Stats()
	t.Logf("100 envelopes to 2 domains sharing an MX: %d connections, at most %d at once, %d transactions",
		st.Connections, st.MaxConcurrentConns, st.Transactions)
	if st.MaxConcurrentConns > 4 {
		t.Errorf("server saw %d concurrent connections, cap is 4", st.MaxConcurrentConns)
	}
	if delivered != 100 || st.Transactions != 100 {
		t.Errorf("delivered %d, server transactions %d; want 100", delivered, st.Transactions)
	}
	if st.Connections > 8 {
		t.Errorf("%d connections for 100 envelopes: cache not reused", st.Connections)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"one.test", dns.TypeMX}, {"two.test", dns.TypeMX}, {"mx.provider.test", dns.TypeA}} {
		if n := w.dns.Queries(q.name, q.qtype); n != 1 {
			t.Errorf("%s %s queried %d times, want 1", q.name, dns.TypeToString[q.qtype], n)
		}
	}
	one, _ := a.Destination("one.test")
	two, _ := a.Destination("two.test")
	if one.Key != "mx.provider.test" || one.Key != two.Key {
		t.Errorf("MX groups %q and %q, want both mx.provider.test", one.Key, two.Key)
	}
}

func TestBusyDestinationDefersPromptly(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	_, a := exampleAgent(t, func(cfg *Config) {
		cfg.MaxConns = 1
		cfg.SlotWait = 30 * time.Millisecond
	}, fakenet.SinkOptions{DataHook: func(fakenet.Delivery) error {
		<-release
		return nil
	}})

	done := make(chan []envelope.Result)
	go func() { done <- a.Deliver(ctxT(t), request("example.test", "slow")) }()
	for !a.Busy("example.test") {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	res := a.Deliver(ctxT(t), request("example.test", "waiting"))
	if el := time.Since(start); el > time.Second {
		t.Errorf("busy destination held the runner for %v", el)
	}
	checkBriefs(t, []brief{{envelope.Deferred, 0, "4.4.5"}}, res)
	if res[0].RetryAfter <= 0 {
		t.Errorf("busy deferral has no RetryAfter: %+v", res[0])
	}
	close(release)
	checkBriefs(t, []brief{sent}, <-done)
	if a.Busy("example.test") {
		t.Error("still busy with an idle cached connection")
	}
}

func refuseWith(code int, enh smtp.EnhancedCode, msg string) func(string) *smtp.SMTPError {
	return func(string) *smtp.SMTPError { return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg} }
}

func Test421SlowsDestination(t *testing.T) {
	t.Parallel()
	_, a := exampleAgent(t, func(cfg *Config) {
		cfg.MaxConns, cfg.InitialConcurrency = 16, 16
	}, fakenet.SinkOptions{ConnHook: refuseWith(421, smtp.EnhancedCode{4, 7, 0}, "too many connections from you")})
	checkBriefs(t, []brief{{envelope.Deferred, 421, "4.7.0"}}, a.Deliver(ctxT(t), request("example.test", "a")))
	s, _ := a.Destination("example.test")
	if s.Window > 8 || !s.SuspendedUntil.IsZero() {
		t.Errorf("after a 421 the state is %+v, want the window halved (<= 8) and not suspended", s)
	}
}

func TestReplyRuleSuspends(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, nil, fakenet.SinkOptions{RcptHook: func(_, to string) error {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 28}, Message: "unusual rate of mail, try again later"}
	}})
	checkBriefs(t, []brief{{envelope.Deferred, 421, "4.7.28"}}, a.Deliver(ctxT(t), request("example.test", "a")))
	res := a.Deliver(ctxT(t), request("example.test", "b"))
	checkBriefs(t, []brief{{envelope.Deferred, 0, "4.4.1"}}, res)
	if !strings.Contains(res[0].Text, "suspended") || res[0].RetryAfter < 14*time.Minute {
		t.Errorf("second delivery = %+v, want suspended for about 15m", res[0])
	}
	if n := w.sinks[0].Connections(); n != 1 {
		t.Errorf("suspended destination got %d connections, want 1", n)
	}
}

func TestDeadDestinationSuspended(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.SetMXHosts("example.test", 60, closedIP)
	cfg := w.config()
	cfg.InitialConcurrency, cfg.DeadAfter = 1, 2
	a := w.agent(cfg)
	for range 2 {
		checkBriefs(t, []brief{{envelope.Deferred, 0, "4.4.1"}}, a.Deliver(ctxT(t), request("example.test", "a")))
	}
	res := a.Deliver(ctxT(t), request("example.test", "a"))
	if !strings.Contains(res[0].Text, "suspended") {
		t.Errorf("third delivery to a dead host: %+v, want suspended", res[0])
	}
}

func TestConcurrencyGrowsOnSuccess(t *testing.T) {
	t.Parallel()
	_, a := exampleAgent(t, func(cfg *Config) {
		cfg.InitialConcurrency, cfg.MaxConns = 2, 4
	})
	for i := range 20 {
		a.Deliver(ctxT(t), request("example.test", fmt.Sprint("r", i)))
	}
	if s, _ := a.Destination("example.test"); s.Window != 4 {
		t.Errorf("window after 20 successes = %d, want the cap 4", s.Window)
	}
}

func TestRateDelaySpacesTransactions(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, func(cfg *Config) {
		cfg.RateDelay = 40 * time.Millisecond
	})
	start := time.Now()
	for i := range 4 {
		checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", fmt.Sprint("r", i))))
	}
	if el := time.Since(start); el < 120*time.Millisecond {
		t.Errorf("4 transactions took %v, want at least 3 rate delays (120ms)", el)
	}
	if n := w.sinks[0].Connections(); n != 1 {
		t.Errorf("connections = %d, want 1", n)
	}
}

func TestSlotWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	w := newWorld(t, fakenet.SinkOptions{DataHook: func(fakenet.Delivery) error {
		<-release
		return nil
	}})
	defer close(release)
	w.dns.SetMXHosts("example.test", 60, sinkIP(0))
	cfg := w.config()
	cfg.MaxConns = 1
	cfg.SlotWait = 10 * time.Second
	a := w.agent(cfg)
	go a.Deliver(ctxT(t), request("example.test", "slow"))
	for !a.Busy("example.test") {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := a.Deliver(ctx, request("example.test", "waiting"))
	if el := time.Since(start); el > time.Second {
		t.Errorf("waited %v for a slot after the context ended", el)
	}
	checkBriefs(t, []brief{{envelope.Deferred, 0, "4.4.7"}}, res)
}

func TestCloseQuitsCachedConnections(t *testing.T) {
	t.Parallel()
	s := newScripted(t, "127.0.0.1", &scripted{ext: pipeExt})
	a := scriptedAgent(t, s, nil)
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "a")))
	a.Close()
	testutil.WaitFor(t, 2*time.Second, "QUIT on the cached connection after Close", func() bool {
		_, cmds, _, _, _ := s.stats()
		return cmds[len(cmds)-1] == "QUIT"
	})
	checkBriefs(t, []brief{{envelope.Deferred, 0, "4.3.2"}}, a.Deliver(ctxT(t), request("example.test", "b")))
}
