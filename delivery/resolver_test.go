package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/fakenet"

	"github.com/miekg/dns"
)

func TestMXCacheSingleflight(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.zoneMX("example.test", 300, sinkIP(0))
	cfg := w.config()
	cfg.SlotWait = 10 * time.Second // 100 runners share the MX group's slots
	a := w.agent(cfg)
	clock := &fakeClock{now: time.Now()}
	a.res.now = clock.Now

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

func TestCacheTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ttl     uint32
		advance []time.Duration // clock steps, each followed by a lookup
		want    []int           // MX queries seen after each lookup
	}{
		{"1s expires", 1, []time.Duration{0, 999 * time.Millisecond, time.Millisecond}, []int{1, 1, 2}},
		{"0 is not cached", 0, []time.Duration{0, 0}, []int{1, 2}},
		{"a week is capped at a day", 7 * 86400, []time.Duration{0, 23 * time.Hour, time.Hour}, []int{1, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.zoneMX("example.test", tt.ttl, sinkIP(0))
			r := newTestResolver(t, w.dns.Addr())
			for i, step := range tt.advance {
				r.clock.Advance(step)
				if _, err := r.LookupMX(ctxT(t), "example.test"); err != nil {
					t.Fatal(err)
				}
				if got := w.dns.Queries("example.test", dns.TypeMX); got != tt.want[i] {
					t.Errorf("after lookup %d: %d MX queries, want %d", i, got, tt.want[i])
				}
			}
		})
	}
}

func TestNegativeCache(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		zone func(d *fakenet.DNS)
		err  error
	}{
		{"NXDOMAIN", func(*fakenet.DNS) {}, ErrNXDomain},
		{"NODATA", func(d *fakenet.DNS) { d.AddName("example.test") }, ErrNoAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.dns.SetNegativeTTL(30)
			tt.zone(w.dns)
			r := newTestResolver(t, w.dns.Addr())
			for i, step := range []time.Duration{0, 29 * time.Second, time.Second} {
				r.clock.Advance(step)
				_, err := r.LookupA(ctxT(t), "example.test")
				if !errors.Is(err, tt.err) {
					t.Fatalf("lookup %d: err = %v, want %v", i, err, tt.err)
				}
			}
			if got := w.dns.Queries("example.test", dns.TypeA); got != 2 {
				t.Errorf("A queries = %d, want 2 (cached for the SOA minimum, then again)", got)
			}
		})
	}
}

func TestNegativeTTL(t *testing.T) {
	soa := func(ttl, minttl uint32) *dns.SOA {
		return &dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl}, Minttl: minttl}
	}
	tests := []struct {
		name string
		ns   []dns.RR
		want time.Duration
	}{
		{"no SOA", nil, defaultNegTTL},
		{"SOA minimum", []dns.RR{soa(3600, 60)}, time.Minute},
		{"SOA TTL lower than minimum", []dns.RR{soa(10, 60)}, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := negativeTTL(&dns.Msg{Ns: tt.ns}); got != tt.want {
				t.Errorf("negativeTTL = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAdditionalSectionSavesALookup(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.zoneMX("example.test", 60, sinkIP(0))
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
	w.zoneMX("example.test", 60, sinkIP(0))
	w.dns.SetA("new.example.test", 60, sinkIP(1))
	a := w.agent(w.config())
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	a.res.now = clock.Now

	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "a")))
	w.dns.SetMX("example.test", 60, fakenet.MX{Pref: 5, Host: "new.example.test"})
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "b")))
	clock.Advance(time.Minute)
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "c")))
	if got := []int{w.sinks[0].RecipientsDelivered(), w.sinks[1].RecipientsDelivered()}; got[0] != 2 || got[1] != 1 {
		t.Errorf("recipients per sink = %v, want [2 1]", got)
	}
}

func TestResolverFailsOverToNextServer(t *testing.T) {
	t.Parallel()
	broken, err := fakenet.NewDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer broken.Close()
	broken.SetRcode("example.test", dns.RcodeRefused)
	w := newWorld(t)
	w.zoneMX("example.test", 60, sinkIP(0))
	r, err := NewResolver([]string{broken.Addr(), w.dns.Addr()}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := r.LookupMX(ctxT(t), "example.test")
	if err != nil || len(hosts) != 1 || hosts[0].Host != "mx1.example.test" {
		t.Fatalf("LookupMX = %v, %v; want mx1.example.test", hosts, err)
	}
	if broken.Queries("example.test", dns.TypeMX) != 1 {
		t.Errorf("first server was not asked")
	}
}

func TestLookupMXOrder(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.SetMX("example.test", 0, // TTL 0: every lookup reshuffles
		fakenet.MX{Pref: 20, Host: "c.test"}, fakenet.MX{Pref: 10, Host: "A.test."}, fakenet.MX{Pref: 10, Host: "b.test"})
	w.dns.SetMX("mixed.test", 60, fakenet.MX{Pref: 0, Host: "."}, fakenet.MX{Pref: 10, Host: "real.test"})
	r := newTestResolver(t, w.dns.Addr())

	seen := map[string]bool{}
	for range 40 {
		hosts, err := r.LookupMX(ctxT(t), "example.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(hosts) != 3 || hosts[2].Host != "c.test" {
			t.Fatalf("hosts = %v, want c.test last", hosts)
		}
		seen[hosts[0].Host] = true
	}
	if !seen["a.test"] || !seen["b.test"] {
		t.Errorf("equal preferences never reordered: first hosts seen %v", seen)
	}

	hosts, err := r.LookupMX(ctxT(t), "mixed.test")
	if err != nil || len(hosts) != 1 || hosts[0].Host != "real.test" {
		t.Errorf("null MX mixed with a real one: %v, %v; want real.test", hosts, err)
	}
}

func TestLookupWaiterLeavesOnCancel(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.SetSilent("slow.test", true)
	r, err := NewResolver([]string{w.dns.Addr()}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = r.LookupMX(ctx, "slow.test")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("err = %v after %v; want deadline exceeded promptly", err, time.Since(start))
	}
}

type testResolver struct {
	*Resolver
	clock *fakeClock
}

func newTestResolver(t *testing.T, server string) testResolver {
	t.Helper()
	r, err := NewResolver([]string{server}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeClock{now: time.Unix(1e9, 0)}
	r.now = c.Now
	return testResolver{r, c}
}
