package delivery

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
	"fanmail/resolver"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// Delivery through the resolver: its cache as Deliver sees it. The
// resolver's own tests are in package resolver.

// resolver opens a resolver on the world's DNS server whose cache runs
// on clock, for an Agent to share.
func (w *world) resolver(clock *testutil.Clock) *resolver.Resolver {
	w.t.Helper()
	r, err := resolver.New(resolver.Config{Servers: []string{w.dns.Addr()}, Timeout: time.Second, Now: clock.Now})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(r.Close)
	return r
}

func TestMXCacheSingleflight(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.SetMXHosts("example.test", 300, sinkIP(0))
	cfg := w.config()
	cfg.SlotWait = 10 * time.Second // 100 runners share the MX group's slots
	clock := testutil.NewClock(time.Now())
	cfg.Resolver = w.resolver(clock)
	a := w.agent(cfg)

	const n = 100
	round := func(tag string) {
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for i := range n {
			wg.Go(func() {
				res := a.Deliver(ctxT(t), request("example.test", fmt.Sprintf("%s%d", tag, i)))
				if res[0].Status != envelope.Delivered {
					errs <- fmt.Sprintf("%+v", res[0])
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Errorf("not delivered: %s", e)
		}
	}
	round("a")
	if got := w.dns.Queries("example.test", dns.TypeMX); got != 1 {
		t.Errorf("%d concurrent deliveries made %d MX queries, want 1", n, got)
	}
	if got := w.dns.Queries("mx1.example.test", dns.TypeA); got != 1 {
		t.Errorf("%d concurrent deliveries made %d A queries, want 1", n, got)
	}
	round("b")
	if got := w.dns.TotalQueries(); got != 2 {
		t.Errorf("second round within TTL: %d queries in all, want still 2", got)
	}
	// Once the TTL has run out, one query per name again.
	clock.Advance(301 * time.Second)
	round("c")
	if got := w.dns.Queries("example.test", dns.TypeMX); got != 2 {
		t.Errorf("after the TTL: %d MX queries in all, want 2", got)
	}
	if got := w.sinks[0].RecipientsDelivered(); got != 3*n {
		t.Errorf("sink got %d recipients, want %d", got, 3*n)
	}
	if d := w.sinks[0].Duplicates(); d != 0 {
		t.Errorf("%d duplicates", d)
	}
}

func TestAdditionalSectionSavesALookup(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.SetMXHosts("example.test", 60, sinkIP(0))
	w.dns.SetAdditional(true)
	// An unrelated name in the additional section must not be cached.
	if err := w.dns.AddRR("other.test. 60 IN A 127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	a := w.agent(w.config())
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "a")))
	if got := w.dns.Queries("mx1.example.test", dns.TypeA); got != 0 {
		t.Errorf("A queries for the MX host = %d, want 0", got)
	}
}

func TestZoneChangeSeenAfterTTL(t *testing.T) {
	t.Parallel()
	w := newWorld(t, fakenet.SinkOptions{}, fakenet.SinkOptions{})
	w.dns.SetMXHosts("example.test", 60, sinkIP(0))
	w.dns.SetA("new.example.test", 60, sinkIP(1))
	clock := testutil.NewClock(time.Unix(1e9, 0))
	cfg := w.config()
	cfg.Resolver = w.resolver(clock)
	a := w.agent(cfg)

	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "a")))
	w.dns.SetMX("example.test", 60, fakenet.MX{Pref: 5, Host: "new.example.test"})
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "b")))
	clock.Advance(time.Minute)
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "c")))
	if got := []int{w.sinks[0].RecipientsDelivered(), w.sinks[1].RecipientsDelivered()}; got[0] != 2 || got[1] != 1 {
		t.Errorf("recipients per sink = %v, want [2 1]", got)
	}
}

// TestGlueOutOfBailiwick: an MX answer for example.test carrying an
// address for mx.other.test in its additional section (pointing at a
// closed port) is not believed: fanmail asks for mx.other.test's A
// record and delivers there. Glue for mx.in.test in in.test's answer is
// in bailiwick and saves that query.
func TestGlueOutOfBailiwick(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var mu sync.Mutex
	aQueries := map[string]int{}
	addr := testutil.DNSServer(t, func(rw dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		switch {
		case q.Qtype == dns.TypeMX && q.Name == "example.test.":
			m.Answer = []dns.RR{testutil.RR(t, "example.test. 300 IN MX 10 mx.other.test.")}
			m.Extra = []dns.RR{testutil.RR(t, "mx.other.test. 300 IN A "+closedIP)}
		case q.Qtype == dns.TypeMX && q.Name == "in.test.":
			m.Answer = []dns.RR{testutil.RR(t, "in.test. 300 IN MX 10 mx.in.test.")}
			m.Extra = []dns.RR{testutil.RR(t, "mx.in.test. 300 IN A "+sinkIP(0))}
		case q.Qtype == dns.TypeA && (q.Name == "mx.other.test." || q.Name == "mx.in.test."):
			mu.Lock()
			aQueries[q.Name]++
			mu.Unlock()
			m.Answer = []dns.RR{testutil.RR(t, q.Name+" 300 IN A "+sinkIP(0))}
		default:
			m.Rcode = dns.RcodeNameError
		}
		rw.WriteMsg(m)
	})
	cfg := w.config()
	cfg.Resolvers = []string{addr}
	a := w.agent(cfg)
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "a")))
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("in.test", "b")))
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(map[string]int{"mx.other.test.": 1}, aQueries); diff != "" {
		t.Errorf("A queries (-want +got):\n%s", diff)
	}
	if got := w.sinks[0].RecipientsDelivered(); got != 2 {
		t.Errorf("sink got %d recipients, want 2", got)
	}
}
