package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Errors the resolver reports for definite answers. Anything else it
// returns (SERVFAIL, timeouts, unreachable servers) is temporary.
var (
	ErrNXDomain  = errors.New("no such domain (NXDOMAIN)")
	ErrNoAddress = errors.New("no address records")
	ErrNullMX    = errors.New("domain does not accept mail (null MX)")
)

const (
	maxTTL          = 24 * time.Hour  // cap on what any answer may claim
	defaultNegTTL   = 5 * time.Minute // negative answers without an SOA
	maxCacheEntries = 100_000
	ednsUDPSize     = 1232 // the DNS flag day 2020 size: avoids fragmentation
)

// MXHost is one mail exchanger for a domain.
type MXHost struct {
	Host     string // lowercase, without the trailing dot
	Pref     uint16
	Implicit bool // the domain has no MX: this is the domain itself (RFC 5321 §5.1)
}

// Resolver looks up MX and A records through recursive DNS servers with
// one cache shared by every caller. It honours TTLs (capped at a day),
// caches negative answers per RFC 2308, and collapses concurrent queries
// for the same name and type into one. It looks up nothing but what
// delivery asks for: no search domains, no canonification.
type Resolver struct {
	servers []string
	timeout time.Duration
	now     func() time.Time // the clock; tests replace it

	flights singleflight.Group

	hits, misses atomic.Int64 // lookups answered from the cache or not (stats.go)

	mu    sync.Mutex
	cache map[cacheKey]cacheEntry

	// UDP sockets to each server (resolver_udp.go), and when to retire
	// one; tests lower the limits.
	udpMu          sync.Mutex
	udp            map[string]*udpPool
	udpMaxQueries  int
	udpMaxAge      time.Duration
	portLo, portHi int // the range random source ports are drawn from
}

type cacheKey struct {
	name  string // lowercase FQDN
	qtype uint16
}

// cacheEntry is one answer: records of the asked type, or a negative one.
type cacheEntry struct {
	nxdomain bool
	mx       []MXHost     // TypeMX answers
	addrs    []netip.Addr // TypeA answers
	expires  time.Time
}

// NewResolver returns a resolver querying servers (host:port) in order,
// each query bounded by timeout.
func NewResolver(servers []string, timeout time.Duration) (*Resolver, error) {
	if len(servers) == 0 {
		return nil, errors.New("resolver: no DNS servers")
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("resolver: timeout %v must be positive", timeout)
	}
	lo, hi := portRange()
	return &Resolver{
		servers:       slices.Clone(servers),
		timeout:       timeout,
		now:           time.Now,
		cache:         make(map[cacheKey]cacheEntry),
		udpMaxQueries: udpMaxQueries,
		udpMaxAge:     udpMaxAge,
		portLo:        lo,
		portHi:        hi,
	}, nil
}

// LookupMX returns domain's mail exchangers in preference order, equal
// preferences shuffled to spread load. A domain without MX records gets
// one implicit MXHost for itself. A null MX (RFC 7505) is ErrNullMX, a
// missing domain ErrNXDomain.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MXHost, error) {
	e, err := r.lookup(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	return mxHosts(domain, e)
}

// CachedMX is LookupMX answered from the cache alone, without a query;
// ok is false when no usable answer is cached.
func (r *Resolver) CachedMX(domain string) (hosts []MXHost, ok bool) {
	e, ok := r.cached(cacheKey{dns.Fqdn(strings.ToLower(domain)), dns.TypeMX})
	if !ok {
		return nil, false
	}
	hosts, err := mxHosts(domain, e)
	return hosts, err == nil
}

func mxHosts(domain string, e cacheEntry) ([]MXHost, error) {
	name := strings.TrimSuffix(strings.ToLower(domain), ".")
	switch {
	case e.nxdomain:
		return nil, fmt.Errorf("lookup %s MX: %w", name, ErrNXDomain)
	case len(e.mx) == 0:
		return []MXHost{{Host: name, Implicit: true}}, nil
	}
	hosts := make([]MXHost, 0, len(e.mx))
	for _, mx := range e.mx {
		// RFC 7505 §3: "." means no mail; a null MX mixed with real ones is
		// a misconfiguration, so use the real ones.
		if mx.Host != "" {
			hosts = append(hosts, mx)
		}
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%s: %w", name, ErrNullMX)
	}
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	slices.SortStableFunc(hosts, func(a, b MXHost) int { return cmp.Compare(a.Pref, b.Pref) })
	return hosts, nil
}

// LookupA returns host's IPv4 addresses. A missing name is ErrNXDomain, a
// name without A records ErrNoAddress.
func (r *Resolver) LookupA(ctx context.Context, host string) ([]netip.Addr, error) {
	e, err := r.lookup(ctx, host, dns.TypeA)
	if err != nil {
		return nil, err
	}
	switch {
	case e.nxdomain:
		return nil, fmt.Errorf("lookup %s A: %w", host, ErrNXDomain)
	case len(e.addrs) == 0:
		return nil, fmt.Errorf("lookup %s A: %w", host, ErrNoAddress)
	}
	return e.addrs, nil
}

// lookup answers from the cache or joins (or starts) the one query in
// flight for this name and type. The query outlives a caller that gives
// up, so the others sharing it still get the answer.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (cacheEntry, error) {
	key := cacheKey{dns.Fqdn(strings.ToLower(name)), qtype}
	if e, ok := r.cached(key); ok {
		r.hits.Add(1)
		return e, nil
	}
	r.misses.Add(1)
	ch := r.flights.DoChan(key.name+"/"+dns.TypeToString[qtype], func() (any, error) {
		// A flight that finished just before this one began has filled
		// the cache; asking again would be a second query.
		if e, ok := r.cached(key); ok {
			return e, nil
		}
		return r.query(context.WithoutCancel(ctx), key)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return cacheEntry{}, res.Err
		}
		return res.Val.(cacheEntry), nil
	case <-ctx.Done():
		return cacheEntry{}, fmt.Errorf("lookup %s %s: %w", key.name, dns.TypeToString[qtype], ctx.Err())
	}
}

func (r *Resolver) cached(key cacheKey) (cacheEntry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.cache[key]
	if !ok || !r.now().Before(e.expires) {
		return cacheEntry{}, false
	}
	return e, true
}

func (r *Resolver) store(key cacheKey, e cacheEntry, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	e.expires = r.now().Add(min(ttl, maxTTL))
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= maxCacheEntries {
		r.evictLocked()
	}
	r.cache[key] = e
}

// evictLocked drops expired entries and, if that is not enough, a tenth
// of the rest: a cheap bound on memory, not an LRU.
func (r *Resolver) evictLocked() {
	now := r.now()
	for k, e := range r.cache {
		if !now.Before(e.expires) {
			delete(r.cache, k)
		}
	}
	drop := len(r.cache) - maxCacheEntries*9/10
	for k := range r.cache {
		if drop <= 0 {
			break
		}
		delete(r.cache, k)
		drop--
	}
}

// query asks each server in turn until one gives a definite answer,
// caches it and returns it.
func (r *Resolver) query(ctx context.Context, key cacheKey) (cacheEntry, error) {
	var lastErr error
	for _, server := range r.servers {
		msg, err := r.exchange(ctx, key, server)
		if err != nil {
			lastErr = err
			continue
		}
		e, ttl := r.parse(key, msg)
		r.store(key, e, ttl)
		return e, nil
	}
	return cacheEntry{}, fmt.Errorf("lookup %s %s: %w", key.name, dns.TypeToString[key.qtype], lastErr)
}

// exchange sends one query (a fresh random ID: SetQuestion draws it from
// crypto/rand) over UDP, retries over TCP if the answer was truncated,
// and accepts only NOERROR and NXDOMAIN.
func (r *Resolver) exchange(ctx context.Context, key cacheKey, server string) (*dns.Msg, error) {
	req := new(dns.Msg)
	req.SetQuestion(key.name, key.qtype)
	req.SetEdns0(ednsUDPSize, false)
	var msg *dns.Msg
	for _, network := range []string{"udp", "tcp"} {
		var m *dns.Msg
		var err error
		if network == "udp" {
			m, err = r.exchangeUDP(req, server, time.Now().Add(r.timeout))
		} else {
			qctx, cancel := context.WithTimeout(ctx, r.timeout)
			c := &dns.Client{Net: "tcp", Timeout: r.timeout}
			m, _, err = c.ExchangeContext(qctx, req, server)
			cancel()
		}
		if err != nil {
			return nil, fmt.Errorf("%s via %s: %w", server, network, err)
		}
		msg = m
		if !m.Truncated {
			break
		}
	}
	if msg.Truncated {
		return nil, fmt.Errorf("%s: answer truncated even over TCP", server)
	}
	if len(msg.Question) != 1 || !strings.EqualFold(msg.Question[0].Name, key.name) || msg.Question[0].Qtype != key.qtype {
		return nil, fmt.Errorf("%s: answer for a different question", server)
	}
	if msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("%s: %s", server, dns.RcodeToString[msg.Rcode])
	}
	return msg, nil
}

// maxCNAMEs bounds the CNAME chain followed in an answer.
const maxCNAMEs = 8

// parse turns a NOERROR or NXDOMAIN answer into a cache entry and its TTL.
// Records of the asked type are taken only for the question's name and
// the names the CNAME chain in the answer leads to from it (as a
// recursive server sends them), so an answer cannot slip in records for
// names nobody asked about.
func (r *Resolver) parse(key cacheKey, msg *dns.Msg) (cacheEntry, time.Duration) {
	var e cacheEntry
	owners, ttl := cnameChain(key.name, msg.Answer)
	for _, rr := range msg.Answer {
		if !owners[strings.ToLower(rr.Header().Name)] {
			continue
		}
		switch rr := rr.(type) {
		case *dns.MX:
			if key.qtype == dns.TypeMX {
				host := strings.TrimSuffix(strings.ToLower(rr.Mx), ".")
				e.mx = append(e.mx, MXHost{Host: host, Pref: rr.Preference})
				ttl = min(ttl, rr.Hdr.Ttl)
			}
		case *dns.A:
			if key.qtype == dns.TypeA {
				if ip, ok := netip.AddrFromSlice(rr.A.To4()); ok {
					e.addrs = append(e.addrs, ip)
					ttl = min(ttl, rr.Hdr.Ttl)
				}
			}
		}
	}
	if msg.Rcode == dns.RcodeNameError || (len(e.mx) == 0 && len(e.addrs) == 0) {
		e = cacheEntry{nxdomain: msg.Rcode == dns.RcodeNameError}
		return e, negativeTTL(msg)
	}
	if key.qtype == dns.TypeMX {
		r.storeAdditional(key.name, msg, e.mx)
	}
	return e, time.Duration(ttl) * time.Second
}

// cnameChain returns the names whose records answer a question for name
// (name itself and the targets of the CNAME chain from it, lowercase
// FQDNs) and the lowest TTL of the chain's CNAMEs, capped at maxTTL.
func cnameChain(name string, answer []dns.RR) (map[string]bool, uint32) {
	owners := map[string]bool{name: true}
	ttl := uint32(maxTTL / time.Second)
	cur := name
	for range maxCNAMEs {
		next := ""
		for _, rr := range answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, cur) {
				next = strings.ToLower(dns.Fqdn(c.Target))
				ttl = min(ttl, c.Hdr.Ttl)
				break
			}
		}
		if next == "" || owners[next] {
			break
		}
		owners[next] = true
		cur = next
	}
	return owners, ttl
}

// negativeTTL is the SOA's TTL capped by its minimum field (RFC 2308 §5),
// or a default when the server sent no SOA.
func negativeTTL(msg *dns.Msg) time.Duration {
	for _, rr := range msg.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
	}
	return defaultNegTTL
}

// storeAdditional caches A records from an MX answer's additional section,
// saving a query per MX host. Only MX hosts the answer itself names and
// that lie in the answer's bailiwick (at or below the name asked about,
// the mail domain) are taken: glue for mx.example.org in example.org's
// answer is used, an address for mx.other.net is not, and fanmail asks
// for that A record itself. A server, or a forger, answering for
// example.org cannot so plant addresses for names outside it.
func (r *Resolver) storeAdditional(qname string, msg *dns.Msg, mxs []MXHost) {
	type glue struct {
		addrs []netip.Addr
		ttl   uint32
	}
	found := map[string]*glue{}
	for _, mx := range mxs {
		if dns.IsSubDomain(qname, mx.Host+".") {
			found[mx.Host] = nil
		}
	}
	for _, rr := range msg.Extra {
		a, ok := rr.(*dns.A)
		if !ok {
			continue
		}
		host := strings.TrimSuffix(strings.ToLower(a.Hdr.Name), ".")
		g, wanted := found[host]
		ip, ok := netip.AddrFromSlice(a.A.To4())
		if !wanted || !ok {
			continue
		}
		if g == nil {
			g = &glue{ttl: a.Hdr.Ttl}
			found[host] = g
		}
		g.addrs = append(g.addrs, ip)
		g.ttl = min(g.ttl, a.Hdr.Ttl)
	}
	for host, g := range found {
		if g != nil {
			r.store(cacheKey{host + ".", dns.TypeA}, cacheEntry{addrs: g.addrs}, time.Duration(g.ttl)*time.Second)
		}
	}
}
