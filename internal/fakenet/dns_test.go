package fakenet

import (
	"context"
	"errors"
	"net"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func newDNS(t *testing.T) *DNS {
	t.Helper()
	d, err := NewDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func query(t *testing.T, d *DNS, network, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 300 * time.Millisecond}
	r, _, err := c.ExchangeContext(context.Background(), m, d.Addr())
	return r, err
}

// summary renders an answer compactly for comparison.
type summary struct {
	Rcode     string
	Truncated bool
	Answer    []string
	Extra     []string
	NegTTL    uint32 // SOA minimum in the authority section, 0 if none
}

func summarize(r *dns.Msg) summary {
	s := summary{Rcode: dns.RcodeToString[r.Rcode], Truncated: r.Truncated}
	for _, rr := range r.Answer {
		s.Answer = append(s.Answer, rr.String())
	}
	for _, rr := range r.Extra {
		s.Extra = append(s.Extra, rr.String())
	}
	sort.Strings(s.Answer)
	sort.Strings(s.Extra)
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			s.NegTTL = soa.Minttl
		}
	}
	return s
}

func TestDNSAnswers(t *testing.T) {
	d := newDNS(t)
	d.SetMX("Example.TEST", 60, MX{10, "mx1.example.test"}, MX{20, "mx2.example.test"})
	d.SetA("mx1.example.test", 30, "127.0.0.2")
	d.SetA("mx2.example.test", 30, "127.0.0.3", "127.0.0.4")
	d.SetNullMX("null.test", 60)
	d.SetA("implicit.test", 60, "127.0.0.5")
	d.AddName("empty.test")
	d.SetNegativeTTL(42)
	if err := d.AddRR("alias.test. 60 IN CNAME example.test."); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, qname string
		qtype       uint16
		setup       func()
		want        summary
	}{
		{name: "MX", qname: "example.test", qtype: dns.TypeMX, want: summary{Rcode: "NOERROR", Answer: []string{
			"example.test.\t60\tIN\tMX\t10 mx1.example.test.",
			"example.test.\t60\tIN\tMX\t20 mx2.example.test.",
		}}},
		{name: "A", qname: "MX2.example.test", qtype: dns.TypeA, want: summary{Rcode: "NOERROR", Answer: []string{
			"mx2.example.test.\t30\tIN\tA\t127.0.0.3",
			"mx2.example.test.\t30\tIN\tA\t127.0.0.4",
		}}},
		{name: "null MX", qname: "null.test", qtype: dns.TypeMX, want: summary{Rcode: "NOERROR", Answer: []string{
			"null.test.\t60\tIN\tMX\t0 .",
		}}},
		{name: "NODATA for MX", qname: "implicit.test", qtype: dns.TypeMX, want: summary{Rcode: "NOERROR", NegTTL: 42}},
		{name: "empty name", qname: "empty.test", qtype: dns.TypeA, want: summary{Rcode: "NOERROR", NegTTL: 42}},
		{name: "NXDOMAIN", qname: "nowhere.test", qtype: dns.TypeMX, want: summary{Rcode: "NXDOMAIN", NegTTL: 42}},
		{name: "CNAME via AddRR", qname: "alias.test", qtype: dns.TypeCNAME, want: summary{Rcode: "NOERROR", Answer: []string{
			"alias.test.\t60\tIN\tCNAME\texample.test.",
		}}},
		{name: "SERVFAIL", qname: "example.test", qtype: dns.TypeMX,
			setup: func() { d.SetRcode("example.test", dns.RcodeServerFailure) },
			want:  summary{Rcode: "SERVFAIL"}},
		{name: "rcode cleared", qname: "example.test", qtype: dns.TypeA,
			setup: func() { d.SetRcode("example.test", dns.RcodeSuccess) },
			want:  summary{Rcode: "NOERROR", NegTTL: 42}},
		{name: "additional section", qname: "example.test", qtype: dns.TypeMX,
			setup: func() { d.SetAdditional(true) },
			want: summary{Rcode: "NOERROR", Answer: []string{
				"example.test.\t60\tIN\tMX\t10 mx1.example.test.",
				"example.test.\t60\tIN\tMX\t20 mx2.example.test.",
			}, Extra: []string{
				"mx1.example.test.\t30\tIN\tA\t127.0.0.2",
				"mx2.example.test.\t30\tIN\tA\t127.0.0.3",
				"mx2.example.test.\t30\tIN\tA\t127.0.0.4",
			}}},
		{name: "changed at run time", qname: "example.test", qtype: dns.TypeMX,
			setup: func() { d.SetAdditional(false); d.SetMX("example.test", 5, MX{1, "mx2.example.test"}) },
			want: summary{Rcode: "NOERROR", Answer: []string{
				"example.test.\t5\tIN\tMX\t1 mx2.example.test.",
			}}},
		{name: "removed", qname: "example.test", qtype: dns.TypeMX,
			setup: func() { d.RemoveName("example.test") },
			want:  summary{Rcode: "NXDOMAIN", NegTTL: 42}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			for _, network := range []string{"udp", "tcp"} {
				r, err := query(t, d, network, tt.qname, tt.qtype)
				if err != nil {
					t.Fatalf("%s query: %v", network, err)
				}
				if diff := cmp.Diff(tt.want, summarize(r)); diff != "" {
					t.Errorf("%s answer (-want +got):\n%s", network, diff)
				}
			}
		})
	}
}

func TestDNSTruncateSilentAndCounts(t *testing.T) {
	d := newDNS(t)
	d.SetA("host.test", 60, "127.0.0.9")

	d.SetTruncate(true)
	r, err := query(t, d, "udp", "host.test", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("UDP answer with truncate: TC=%v answers=%d, want TC and none", r.Truncated, len(r.Answer))
	}
	r, err = query(t, d, "tcp", "host.test", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 1 {
		t.Errorf("TCP answer with truncate: TC=%v answers=%d, want full answer", r.Truncated, len(r.Answer))
	}
	d.SetTruncate(false)

	d.SetSilent("host.test", true)
	_, err = query(t, d, "udp", "host.test", dns.TypeA)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("silent name: err = %v, want timeout", err)
	}

	if n := d.Queries("HOST.test.", dns.TypeA); n != 3 {
		t.Errorf("Queries(host.test, A) = %d, want 3", n)
	}
	if n := d.Queries("host.test", dns.TypeMX); n != 0 {
		t.Errorf("Queries(host.test, MX) = %d, want 0", n)
	}
	if n, tcp := d.TotalQueries(), d.TCPQueries(); n != 3 || tcp != 1 {
		t.Errorf("TotalQueries, TCPQueries = %d, %d, want 3, 1", n, tcp)
	}
	d.ResetQueries()
	if n := d.TotalQueries(); n != 0 {
		t.Errorf("TotalQueries after reset = %d", n)
	}
}

func TestDNSFixedAddress(t *testing.T) {
	d := newDNS(t)
	// A second server on the same address must fail cleanly, not hang.
	if d2, err := NewDNS(d.Addr()); err == nil {
		d2.Close()
		t.Fatal("second server on the same address started")
	}
}

func TestDNSZoneRefusesOutside(t *testing.T) {
	d := newDNS(t)
	d.SetA("mx.bench.test", 60, "127.0.0.9")
	d.SetZone("bench.test")
	for name, want := range map[string]string{"mx.bench.test": "NOERROR", "other.bench.test": "NXDOMAIN", "proxy.example.org": "REFUSED"} {
		r, err := query(t, d, "udp", name, dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if got := dns.RcodeToString[r.Rcode]; got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
}
