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

	mu    sync.Mutex
	cache map[cacheKey]cacheEntry

	udpMu   sync.Mutex
	udpIdle map[string][]*dns.Conn // sockets to each server, free for a query
}

// maxIdleUDP bounds the sockets kept per server between queries: enough
// for a burst of lookups at the start of a fan-out without a new socket
// (socket, connect, close: most of a query's cost on loopback) each.
const maxIdleUDP = 32

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
	return &Resolver{
		servers: slices.Clone(servers),
		timeout: timeout,
		now:     time.Now,
		cache:   make(map[cacheKey]cacheEntry),
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
		return e, nil
	}
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

// exchange sends one query over UDP, retries over TCP if the answer was
// truncated, and accepts only NOERROR and NXDOMAIN.
func (r *Resolver) exchange(ctx context.Context, key cacheKey, server string) (*dns.Msg, error) {
	req := new(dns.Msg)
	req.SetQuestion(key.name, key.qtype)
	req.SetEdns0(ednsUDPSize, false)
	var msg *dns.Msg
	for _, network := range []string{"udp", "tcp"} {
		qctx, cancel := context.WithTimeout(ctx, r.timeout)
		c := &dns.Client{Net: network, Timeout: r.timeout, UDPSize: ednsUDPSize}
		var m *dns.Msg
		var err error
		if network == "udp" {
			m, err = r.exchangeUDP(qctx, c, req, server)
		} else {
			m, _, err = c.ExchangeContext(qctx, req, server)
		}
		cancel()
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

// exchangeUDP sends req over a UDP socket to server kept from an earlier
// query, or a new one. A socket is used by one query at a time; replies
// with another ID (late answers to a query that timed out) are skipped by
// the client, and a socket that saw an error is closed, not reused.
func (r *Resolver) exchangeUDP(ctx context.Context, c *dns.Client, req *dns.Msg, server string) (*dns.Msg, error) {
	r.udpMu.Lock()
	var co *dns.Conn
	if idle := r.udpIdle[server]; len(idle) > 0 {
		co = idle[len(idle)-1]
		r.udpIdle[server] = idle[:len(idle)-1]
	}
	r.udpMu.Unlock()
	if co == nil {
		var err error
		if co, err = c.DialContext(ctx, server); err != nil {
			return nil, err
		}
	}
	m, _, err := c.ExchangeWithConnContext(ctx, req, co)
	if err != nil {
		co.Close()
		return nil, err
	}
	r.udpMu.Lock()
	if r.udpIdle == nil {
		r.udpIdle = map[string][]*dns.Conn{}
	}
	if len(r.udpIdle[server]) < maxIdleUDP {
		r.udpIdle[server] = append(r.udpIdle[server], co)
		co = nil
	}
	r.udpMu.Unlock()
	if co != nil {
		co.Close()
	}
	return m, nil
}

// closeIdle closes the sockets kept for later queries.
func (r *Resolver) closeIdle() {
	r.udpMu.Lock()
	defer r.udpMu.Unlock()
	for server, idle := range r.udpIdle {
		for _, co := range idle {
			co.Close()
		}
		delete(r.udpIdle, server)
	}
}

// parse turns a NOERROR or NXDOMAIN answer into a cache entry and its TTL.
// Records of the asked type are taken whatever their owner, which follows
// the CNAME chain a recursive server puts in the answer.
func (r *Resolver) parse(key cacheKey, msg *dns.Msg) (cacheEntry, time.Duration) {
	var e cacheEntry
	var ttl uint32 = uint32(maxTTL / time.Second)
	for _, rr := range msg.Answer {
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
		case *dns.CNAME:
			ttl = min(ttl, rr.Hdr.Ttl)
		}
	}
	if msg.Rcode == dns.RcodeNameError || (len(e.mx) == 0 && len(e.addrs) == 0) {
		e = cacheEntry{nxdomain: msg.Rcode == dns.RcodeNameError}
		return e, negativeTTL(msg)
	}
	if key.qtype == dns.TypeMX {
		r.storeAdditional(msg, e.mx)
	}
	return e, time.Duration(ttl) * time.Second
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
// saving a query per MX host. Only names the answer itself points at are
// taken, so a server cannot plant addresses for unrelated names.
func (r *Resolver) storeAdditional(msg *dns.Msg, mxs []MXHost) {
	type glue struct {
		addrs []netip.Addr
		ttl   uint32
	}
	found := map[string]*glue{}
	for _, mx := range mxs {
		found[mx.Host] = nil
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
