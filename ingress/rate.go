package ingress

// The rate of new connections per client, after Postfix's anvil(8) and
// smtpd_client_connection_rate_limit. The session caps bound how many
// sessions a client holds at once, not how fast it opens new ones; a
// client that connects and disconnects in a loop costs a greeting, a
// goroutine and, with STARTTLS, a handshake each time. Past the limit
// its connections get Postfix's 421 4.7.0 until its window ends.
//
// The window is fixed, as anvil's: it starts at a client's first
// connection and lasts Load.ConnectionRateWindow; every attempt in it
// counts, refused ones too (anvil counts each connect before smtpd
// compares). A fixed window costs one start time and one count per
// client, where a sliding one would keep a time per connection; its
// weakness, up to twice the limit across a window's end, does not matter
// for what the limit is for, which is to stop a churn of hundreds a
// second, not to meter a legitimate sender.
//
// Windows are kept in a list in the order they started, so the expired
// ones are always at its head: each connection prunes them, and the
// table holds only clients seen in the last window. It is capped at
// maxRateClients; when a sweep from more addresses than that fills it,
// the oldest window is forgotten for the new client. The oldest is the
// one closest to its end anyway, and every address in such a sweep is a
// different client that the session caps and max_sessions still bound;
// refusing untracked clients instead would turn a sweep into a denial
// of service for everyone else.

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxRateClients bounds the clients whose windows are remembered: some
// 170 bytes each (133 measured for the window and the table, plus the
// key), so about 11 MB when full. Filling it takes that many
// different IPv4 addresses or IPv6 /64s in one window.
const maxRateClients = 1 << 16

// rateLimiter counts each client's connections in its current window.
type rateLimiter struct {
	limit  int
	window time.Duration
	exempt []netip.Prefix
	max    int
	now    func() time.Time
	log    *slog.Logger

	mu         sync.Mutex
	clients    map[string]*rateWindow
	head, tail *rateWindow // oldest and newest window
	evicting   bool        // the table is full; logged once until it is down to half
}

// rateWindow is one client's current window.
type rateWindow struct {
	client     string
	start      time.Time
	n          int  // connections in the window, refused ones included
	warned     bool // its refusal is logged once per window
	prev, next *rateWindow
}

// newRateLimiter returns the limiter of cfg, with peers' networks exempt
// as well as cfg's; nil when the limit is off.
func newRateLimiter(cfg Load, peers []netip.Prefix, log *slog.Logger) *rateLimiter {
	if cfg.MaxConnectionRatePerClient <= 0 {
		return nil
	}
	window := cfg.ConnectionRateWindow
	if window <= 0 {
		window = DefaultConfig().Load.ConnectionRateWindow
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	var exempt []netip.Prefix
	for _, list := range [][]netip.Prefix{cfg.ConnectionRateExempt, peers} {
		for _, p := range list {
			// Clients are matched unmapped: ::ffff:192.0.2.0/120 is 192.0.2.0/24.
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			exempt = append(exempt, p.Masked())
		}
	}
	return &rateLimiter{limit: cfg.MaxConnectionRatePerClient, window: window, exempt: exempt,
		max: maxRateClients, now: now, log: log, clients: map[string]*rateWindow{}}
}

// exempted reports whether the connection's client is never limited.
func (l *rateLimiter) exempted(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip := tcp.AddrPort().Addr().Unmap()
	for _, p := range l.exempt {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// allow counts a connection of client and reports whether it is within
// the limit.
func (l *rateLimiter) allow(client string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	w := l.clients[client]
	if w == nil {
		if len(l.clients) >= l.max {
			l.evictOldest()
		}
		w = &rateWindow{client: client, start: now}
		l.clients[client] = w
		l.pushBack(w)
	}
	w.n++
	if w.n <= l.limit {
		return true
	}
	if !w.warned {
		w.warned = true
		l.log.Warn("connection rate limit exceeded, refusing the client's connections until its window ends",
			"client", client, "connections", w.n, "max_connection_rate_per_client", l.limit,
			"connection_rate_window", l.window.String(), "until", w.start.Add(l.window).Format(time.RFC3339))
	}
	return false
}

// prune forgets the windows that have ended: the list is in start
// order, so they are at its head.
func (l *rateLimiter) prune(now time.Time) {
	for w := l.head; w != nil && now.Sub(w.start) >= l.window; w = l.head {
		l.remove(w)
	}
	if l.evicting && len(l.clients) <= l.max/2 {
		l.evicting = false
		l.log.Info("connection rate table below half full again", "clients", len(l.clients), "max_clients", l.max)
	}
}

// evictOldest makes room in a full table by forgetting the window that
// started first.
func (l *rateLimiter) evictOldest() {
	if !l.evicting {
		l.evicting = true
		l.log.Warn("connection rate table full: forgetting the oldest windows to track new clients",
			"clients", len(l.clients), "max_clients", l.max)
	}
	l.remove(l.head)
}

func (l *rateLimiter) pushBack(w *rateWindow) {
	w.prev = l.tail
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
}

func (l *rateLimiter) remove(w *rateWindow) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next = nil, nil
	delete(l.clients, w.client)
}

// tracked is the number of clients whose windows are remembered.
func (l *rateLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}
