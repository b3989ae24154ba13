package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

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
			w := newTestDNS(t)
			w.dns.SetMXHosts("example.test", tt.ttl, "127.0.0.10")
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
			w := newTestDNS(t)
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

func TestResolverFailsOverToNextServer(t *testing.T) {
	t.Parallel()
	broken, err := fakenet.NewDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer broken.Close()
	broken.SetRcode("example.test", dns.RcodeRefused)
	w := newTestDNS(t)
	w.dns.SetMXHosts("example.test", 60, "127.0.0.10")
	r, err := New(Config{Servers: []string{broken.Addr(), w.dns.Addr()}, Timeout: time.Second})
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
	w := newTestDNS(t)
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
	w := newTestDNS(t)
	w.dns.SetSilent("slow.test", true)
	r, err := New(Config{Servers: []string{w.dns.Addr()}, Timeout: 2 * time.Second})
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

// testDNS is a DNS server for one test.
type testDNS struct{ dns *fakenet.DNS }

func newTestDNS(t *testing.T) testDNS {
	t.Helper()
	d, err := fakenet.NewDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return testDNS{d}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type testResolver struct {
	*Resolver
	clock *testutil.Clock
}

func newTestResolver(t *testing.T, server string) testResolver {
	t.Helper()
	c := testutil.NewClock(time.Unix(1e9, 0))
	r, err := New(Config{Servers: []string{server}, Timeout: time.Second, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return testResolver{r, c}
}

// BenchmarkResolver measures queries that miss the cache (TTL 0: every
// lookup asks), one at a time and from many goroutines, against an
// in-process server on loopback: the resolver's own cost per query.
//
//	go test -run '^$' -bench Resolver ./resolver/
func BenchmarkResolver(b *testing.B) {
	d, err := fakenet.NewDNS("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	const names = 64
	for i := range names {
		d.SetA(fmt.Sprintf("h%d.test", i), 0, "127.0.0.10")
	}
	r, err := New(Config{Servers: []string{d.Addr()}, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := r.LookupA(b.Context(), fmt.Sprintf("h%d.test", i%names)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.LookupA(context.Background(), fmt.Sprintf("h%d.test", next.Add(1)%names)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// TestParseTakesOnlyTheAskedNames: answer records count only for the
// question's name and its CNAME chain.
func TestParseTakesOnlyTheAskedNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer []string
		want   []MXHost
		ttl    time.Duration
	}{
		{"direct", []string{"example.test. 60 IN MX 10 mx.example.test."}, []MXHost{{Host: "mx.example.test", Pref: 10}}, time.Minute},
		{"unrelated owner", []string{"evil.test. 60 IN MX 10 mx.evil.test."}, nil, defaultNegTTL},
		{"CNAME chain", []string{
			"example.test. 30 IN CNAME alias.test.",
			"alias.test. 60 IN CNAME Real.Test.",
			"real.test. 90 IN MX 5 mx.real.test.",
			"evil.test. 60 IN MX 10 mx.evil.test.",
		}, []MXHost{{Host: "mx.real.test", Pref: 5}}, 30 * time.Second},
		{"CNAME loop", []string{
			"example.test. 60 IN CNAME loop.test.",
			"loop.test. 60 IN CNAME example.test.",
			"loop.test. 60 IN MX 5 mx.loop.test.",
		}, []MXHost{{Host: "mx.loop.test", Pref: 5}}, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := new(dns.Msg)
			msg.SetQuestion("example.test.", dns.TypeMX)
			for _, s := range tt.answer {
				msg.Answer = append(msg.Answer, testutil.RR(t, s))
			}
			r := newTestResolver(t, "127.0.0.1:1")
			e, ttl := r.parse(cacheKey{"example.test.", dns.TypeMX}, msg)
			if diff := cmp.Diff(tt.want, e.mx); diff != "" || ttl != tt.ttl {
				t.Errorf("MX (-want +got):\n%s\nttl %v, want %v", diff, ttl, tt.ttl)
			}
		})
	}
}

// TestUDPSourcePortsVary: queries leave from many random ports, each
// socket retired after udpMaxQueries, all in the ephemeral range.
func TestUDPSourcePortsVary(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		maxQueries int
		queries    int
		minPorts   int
	}{
		{"pool fills before reuse", udpMaxQueries, 40, udpPoolSize},
		{"sockets retire", 3, 60, 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var ports []int
			addr := testutil.DNSServer(t, func(rw dns.ResponseWriter, req *dns.Msg) {
				mu.Lock()
				ports = append(ports, rw.RemoteAddr().(*net.UDPAddr).Port)
				mu.Unlock()
				m := new(dns.Msg)
				m.SetReply(req)
				m.Answer = []dns.RR{testutil.RR(t, req.Question[0].Name+" 0 IN A 127.0.0.10")}
				rw.WriteMsg(m)
			})
			r, err := New(Config{Servers: []string{addr}, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			r.udpMaxQueries = tt.maxQueries
			for i := range tt.queries {
				if _, err := r.LookupA(ctxT(t), fmt.Sprintf("h%d.test", i)); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			uses := map[int]int{}
			for i, p := range ports {
				uses[p]++
				if p < r.portLo || p > r.portHi {
					t.Errorf("query %d from port %d, outside the ephemeral range %d-%d", i, p, r.portLo, r.portHi)
				}
			}
			if len(ports) != tt.queries || len(uses) < tt.minPorts {
				t.Errorf("%d queries came from %d ports, want at least %d: %v", len(ports), len(uses), tt.minPorts, ports)
			}
			if distinct := len(slices.Compact(slices.Clone(ports[:udpPoolSize]))); distinct != udpPoolSize {
				t.Errorf("the first %d queries used %d ports, want a new one each", udpPoolSize, distinct)
			}
			for p, n := range uses {
				if n > tt.maxQueries {
					t.Errorf("port %d used for %d queries, more than %d", p, n, tt.maxQueries)
				}
			}
		})
	}
}

// TestUDPAnswerMatching: before its true answer, every query meets a
// forged one from another address, one with the wrong ID, one for
// another name, one for another type, a query instead of an answer,
// and garbage. Only the true answer is taken; without it the lookup
// times out rather than believe a forgery.
func TestUDPAnswerMatching(t *testing.T) {
	t.Parallel()
	for _, honest := range []bool{true, false} {
		t.Run(fmt.Sprintf("honest=%v", honest), func(t *testing.T) {
			t.Parallel()
			srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			forger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
			if err != nil {
				t.Fatal(err)
			}
			defer forger.Close()
			go func() {
				buf := make([]byte, 4096)
				for {
					n, from, err := srv.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					req := new(dns.Msg)
					if req.Unpack(buf[:n]) != nil {
						continue
					}
					reply := func(ip string, change func(m *dns.Msg)) []byte {
						m := new(dns.Msg)
						m.SetReply(req)
						m.Answer = []dns.RR{testutil.RR(t, req.Question[0].Name+" 60 IN A "+ip)}
						change(m)
						b, _ := m.Pack()
						return b
					}
					forger.WriteToUDPAddrPort(reply("127.0.0.66", func(*dns.Msg) {}), from)
					srv.WriteToUDPAddrPort(reply("127.0.0.67", func(m *dns.Msg) { m.Id++ }), from)
					srv.WriteToUDPAddrPort(reply("127.0.0.68", func(m *dns.Msg) { m.Question[0].Name = "other.test." }), from)
					srv.WriteToUDPAddrPort(reply("127.0.0.69", func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeMX }), from)
					srv.WriteToUDPAddrPort(reply("127.0.0.70", func(m *dns.Msg) { m.Response = false }), from)
					srv.WriteToUDPAddrPort([]byte("\x00\x01garbage"), from)
					if honest {
						time.Sleep(20 * time.Millisecond) // the forgeries are in first
						srv.WriteToUDPAddrPort(reply("127.0.0.10", func(*dns.Msg) {}), from)
					}
				}
			}()
			r, err := New(Config{Servers: []string{srv.LocalAddr().String()}, Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for i := range 3 { // a fresh socket, then reused ones
				addrs, err := r.LookupA(ctxT(t), fmt.Sprintf("host%d.test", i))
				switch {
				case honest && (err != nil || len(addrs) != 1 || addrs[0].String() != "127.0.0.10"):
					t.Errorf("lookup %d: %v, %v; want the true answer 127.0.0.10", i, addrs, err)
				case !honest && err == nil:
					t.Errorf("lookup %d believed a forgery: %v", i, addrs)
				}
			}
		})
	}
}

// TestLookupTXT: a record's strings are joined, several records stay
// apart, a name without TXT records gives none, a missing name is
// ErrNXDomain, a failing server is an error that is neither, and an
// answer is cached for its TTL.
func TestLookupTXT(t *testing.T) {
	t.Parallel()
	w := newTestDNS(t)
	for _, rr := range []string{
		`_dmarc.example.test. 300 IN TXT "v=DMARC1; " "p=reject"`,
		`multi.test. 300 IN TXT "one"`,
		`multi.test. 300 IN TXT "two"`,
	} {
		if err := w.dns.AddRR(rr); err != nil {
			t.Fatal(err)
		}
	}
	w.dns.SetA("nodata.test", 300, "127.0.0.10")
	w.dns.SetRcode("broken.test", dns.RcodeServerFailure)
	r := newTestResolver(t, w.dns.Addr())
	tests := []struct {
		name    string
		want    []string
		wantErr error // nil: no error; errAny: some error that is not ErrNXDomain
	}{
		{"_dmarc.example.test", []string{"v=DMARC1; p=reject"}, nil},
		{"multi.test", []string{"one", "two"}, nil},
		{"nodata.test", nil, nil},
		{"missing.test", nil, ErrNXDomain},
		{"broken.test", nil, errAny},
	}
	for _, tt := range tests {
		got, err := r.LookupTXT(ctxT(t), tt.name)
		switch {
		case tt.wantErr == errAny:
			if err == nil || errors.Is(err, ErrNXDomain) {
				t.Errorf("%s: err = %v, want a temporary error", tt.name, err)
			}
		case !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil):
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
		}
		slices.Sort(got)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	r.clock.Advance(299 * time.Second)
	if _, err := r.LookupTXT(ctxT(t), "_dmarc.example.test"); err != nil {
		t.Fatal(err)
	}
	if got := w.dns.Queries("_dmarc.example.test", dns.TypeTXT); got != 1 {
		t.Errorf("TXT queries within the TTL = %d, want 1", got)
	}
}

var errAny = errors.New("any error but NXDOMAIN")
