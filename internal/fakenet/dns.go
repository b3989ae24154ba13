package fakenet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// MX is one mail exchanger for DNS.SetMX.
type MX struct {
	Pref uint16
	Host string
}

type queryKey struct {
	name  string
	qtype uint16
}

// DNS is an authoritative-style DNS server for one test's zone, on UDP and
// TCP at the same address. Names not in the zone get NXDOMAIN; names in it
// without records of the asked type get NODATA. Negative answers carry an
// SOA whose minimum is the negative TTL (RFC 2308). All methods are safe
// for concurrent use, so the zone can change while clients query it.
type DNS struct {
	udp, tcp *dns.Server

	// Settings independent of the records, so they need no lock.
	negTTL     atomic.Uint32
	additional atomic.Bool // add A records of MX targets to MX answers
	truncate   atomic.Bool // answer every UDP query with an empty, truncated reply

	mu         sync.Mutex
	records    map[string][]dns.RR // by lowercase FQDN
	rcodes     map[string]int      // forced reply code per name
	silent     map[string]bool     // names whose queries get no answer
	zone       string              // if set, names outside it get REFUSED
	queries    map[queryKey]int
	total      int
	tcpQueries int
}

// NewDNS starts a server on addr ("127.0.0.1:0" picks a port, used for
// both UDP and TCP) and returns once both are serving.
func NewDNS(addr string) (*DNS, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	d := &DNS{
		records: make(map[string][]dns.RR),
		rcodes:  make(map[string]int),
		silent:  make(map[string]bool),
		queries: make(map[queryKey]int),
	}
	d.negTTL.Store(300)
	pc, ln, err := listenBoth(addr)
	if err != nil {
		return nil, err
	}
	d.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serveUDP)}
	d.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(d.serveTCP)}
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		started := make(chan struct{})
		failed := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { failed <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-failed:
			pc.Close()
			ln.Close()
			d.Close()
			return nil, fmt.Errorf("dns serve %s: %w", addr, err)
		}
	}
	return d, nil
}

// listenBoth opens UDP and TCP on the same port; with port 0 the UDP port
// the OS picks may be taken for TCP, so it tries a few times.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns listen udp %s: %w", addr, err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if !strings.HasSuffix(addr, ":0") {
			break
		}
	}
	return nil, nil, fmt.Errorf("dns listen tcp %s: %w", addr, lastErr)
}

// Addr is the host:port to give a resolver.
func (d *DNS) Addr() string { return d.udp.PacketConn.LocalAddr().String() }

// Close stops both servers.
func (d *DNS) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		if srv != nil {
			if err := srv.ShutdownContext(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

// SetMX replaces name's MX records.
func (d *DNS) SetMX(name string, ttl uint32, mxs ...MX) {
	rrs := make([]dns.RR, 0, len(mxs))
	for _, mx := range mxs {
		rrs = append(rrs, &dns.MX{
			Hdr:        dns.RR_Header{Name: fqdn(name), Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: ttl},
			Preference: mx.Pref,
			Mx:         fqdn(mx.Host),
		})
	}
	d.replace(name, dns.TypeMX, rrs)
}

// SetMXHosts points name at MX hosts mxN.<name> with preference
// 10*N, N counting from 1, each host's A record being the IP given in
// that place: a domain served by one or more sinks in one call.
func (d *DNS) SetMXHosts(name string, ttl uint32, ips ...string) {
	mxs := make([]MX, 0, len(ips))
	for i, ip := range ips {
		host := fmt.Sprintf("mx%d.%s", i+1, name)
		mxs = append(mxs, MX{Pref: uint16(10 * (i + 1)), Host: host})
		d.SetA(host, ttl, ip)
	}
	d.SetMX(name, ttl, mxs...)
}

// SetNullMX makes name advertise that it accepts no mail (RFC 7505).
func (d *DNS) SetNullMX(name string, ttl uint32) {
	d.SetMX(name, ttl, MX{Pref: 0, Host: "."})
}

// SetA replaces name's A records.
func (d *DNS) SetA(name string, ttl uint32, ips ...string) {
	rrs := make([]dns.RR, 0, len(ips))
	for _, ip := range ips {
		rrs = append(rrs, &dns.A{
			Hdr: dns.RR_Header{Name: fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A:   net.ParseIP(ip).To4(),
		})
	}
	d.replace(name, dns.TypeA, rrs)
}

// AddRR adds any record in zone-file syntax, e.g. "x.test. 60 IN TXT hi".
func (d *DNS) AddRR(s string) error {
	rr, err := dns.NewRR(s)
	if err != nil {
		return fmt.Errorf("parse rr %q: %w", s, err)
	}
	rr.Header().Name = fqdn(rr.Header().Name)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records[rr.Header().Name] = append(d.records[rr.Header().Name], rr)
	return nil
}

// Remove deletes name's records of qtype; the name stays in the zone (so
// it answers NODATA) while it has any other record.
func (d *DNS) Remove(name string, qtype uint16) { d.replace(name, qtype, nil) }

// RemoveName deletes every record of name, so it answers NXDOMAIN.
func (d *DNS) RemoveName(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.records, fqdn(name))
}

// AddName puts name in the zone with no records, so it answers NODATA.
func (d *DNS) AddName(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.records[fqdn(name)]; !ok {
		d.records[fqdn(name)] = []dns.RR{}
	}
}

func (d *DNS) replace(name string, qtype uint16, rrs []dns.RR) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := fqdn(name)
	kept := []dns.RR{}
	for _, rr := range d.records[key] {
		if rr.Header().Rrtype != qtype {
			kept = append(kept, rr)
		}
	}
	d.records[key] = append(kept, rrs...)
}

// SetRcode forces every answer for name to carry rcode (e.g.
// dns.RcodeServerFailure); dns.RcodeSuccess restores normal answers.
func (d *DNS) SetRcode(name string, rcode int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rcode == dns.RcodeSuccess {
		delete(d.rcodes, fqdn(name))
		return
	}
	d.rcodes[fqdn(name)] = rcode
}

// SetSilent makes queries for name go unanswered, so clients time out.
func (d *DNS) SetSilent(name string, silent bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.silent[fqdn(name)] = silent
}

// SetNegativeTTL sets the SOA minimum sent with NXDOMAIN and NODATA.
func (d *DNS) SetNegativeTTL(ttl uint32) { d.negTTL.Store(ttl) }

// SetAdditional controls whether MX answers carry the targets' A records
// in the additional section, as many servers do.
func (d *DNS) SetAdditional(on bool) { d.additional.Store(on) }

// SetTruncate makes every UDP answer empty with TC set, forcing TCP.
func (d *DNS) SetTruncate(on bool) { d.truncate.Store(on) }

// SetZone makes the server answer REFUSED for names outside zone, so a
// system resolver that lists it before the real one falls through to the
// next server for every other name. "" (the default) answers everything.
func (d *DNS) SetZone(zone string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.zone = ""
	if zone != "" {
		d.zone = fqdn(zone)
	}
}

// Queries is how many queries for (name, qtype) arrived, over UDP and TCP.
func (d *DNS) Queries(name string, qtype uint16) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[queryKey{fqdn(name), qtype}]
}

// TotalQueries is how many queries arrived in all.
func (d *DNS) TotalQueries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

// TCPQueries is how many queries arrived over TCP.
func (d *DNS) TCPQueries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tcpQueries
}

// ResetQueries zeroes the query counters.
func (d *DNS) ResetQueries() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.queries)
	d.total, d.tcpQueries = 0, 0
}

func (d *DNS) serveUDP(w dns.ResponseWriter, req *dns.Msg) { d.serve(w, req, false) }
func (d *DNS) serveTCP(w dns.ResponseWriter, req *dns.Msg) { d.serve(w, req, true) }

func (d *DNS) serve(w dns.ResponseWriter, req *dns.Msg, overTCP bool) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true

	d.mu.Lock()
	d.queries[queryKey{name, q.Qtype}]++
	d.total++
	if overTCP {
		d.tcpQueries++
	}
	if d.silent[name] {
		d.mu.Unlock()
		return
	}
	switch rrs, exists := d.records[name]; {
	case d.zone != "" && !dns.IsSubDomain(d.zone, name):
		m.Rcode = dns.RcodeRefused
		m.Authoritative = false
	case d.rcodes[name] != 0:
		m.Rcode = d.rcodes[name]
	case !overTCP && d.truncate.Load():
		m.Truncated = true
	case !exists:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, d.soaLocked())
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		if len(m.Answer) == 0 {
			m.Ns = append(m.Ns, d.soaLocked())
		}
		if q.Qtype == dns.TypeMX && d.additional.Load() {
			for _, rr := range m.Answer {
				for _, a := range d.records[rr.(*dns.MX).Mx] {
					if a.Header().Rrtype == dns.TypeA {
						m.Extra = append(m.Extra, dns.Copy(a))
					}
				}
			}
		}
	}
	d.mu.Unlock()
	_ = w.WriteMsg(m)
}

// soaLocked is the SOA for negative answers; its owner is the root because
// the fake zone has no apex, and a resolver only needs its minimum.
func (d *DNS) soaLocked() dns.RR {
	ttl := d.negTTL.Load()
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      "ns.fakenet.test.",
		Mbox:    "hostmaster.fakenet.test.",
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  ttl,
	}
}
