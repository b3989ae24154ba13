package web

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// client is the address a request comes from: the peer, or, when the
// peer is a trusted proxy, the nearest address in X-Forwarded-For that
// is not one. Each proxy appends the address it was reached from, so the
// list is read from the right; what lies left of the first untrusted
// address was written by the client itself and proves nothing. A hop
// that does not parse ends the walk at the proxy that wrote it.
func (s *Server) client(r *http.Request) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := peer.Addr().Unmap()
	if !s.trusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			break
		}
		addr = hop
		if !s.trusted(hop) {
			break
		}
	}
	return addr
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseHop(h string) (netip.Addr, bool) {
	h = strings.TrimSpace(h)
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(h); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientKey is what the rate limit counts by: an IPv4 address or an
// IPv6 /64, which one subscriber line usually gets whole (the same unit
// as ingress's per-client cap).
func clientKey(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, err := a.Prefix(64)
	if err != nil {
		return netip.Prefix{} // the invalid address: one key for all that have none
	}
	return p
}

// limiter is a token bucket per client, in a table of at most max
// clients. A client whose bucket has filled up again is forgotten
// without loss; when the table is full of active clients, an arbitrary
// one is forgotten and starts afresh on its next request, so memory
// stays bounded under a flood from many addresses.
type limiter struct {
	rate  rate.Limit
	burst int
	max   int
	now   func() time.Time

	mu        sync.Mutex
	clients   map[netip.Prefix]*rate.Limiter
	lastSweep time.Time
}

func newLimiter(perSecond float64, burst, max int, now func() time.Time) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, max: max, now: now, clients: map[netip.Prefix]*rate.Limiter{}}
}

// allow takes a token from a's bucket, if it has one.
func (l *limiter) allow(a netip.Addr) bool {
	key := clientKey(a)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[key]
	if b == nil {
		if len(l.clients) >= l.max {
			l.evict(now)
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.clients[key] = b
	}
	return b.AllowN(now, 1)
}

// evict makes room for one client. The sweep for full buckets walks the
// whole table, so it runs at most once a second; in between, or when it
// frees nothing, clients are dropped at random (map order).
func (l *limiter) evict(now time.Time) {
	if now.Sub(l.lastSweep) >= time.Second {
		l.lastSweep = now
		for k, b := range l.clients {
			if b.TokensAt(now) >= float64(l.burst) {
				delete(l.clients, k)
			}
		}
	}
	for k := range l.clients {
		if len(l.clients) < l.max {
			break
		}
		delete(l.clients, k)
	}
}
