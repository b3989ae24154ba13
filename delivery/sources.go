package delivery

// Egress address pools. A queue group may send from a pool of local
// addresses, each with its own HELO name (it should match the address's
// reverse DNS), as KumoMTA's egress pools and Postfix's per-transport
// smtp_bind_address do: big providers throttle and rate each sending
// address, so spreading a group's connections over several multiplies
// what the group may send. Each new connection of the group takes the
// next address round-robin, skipping an address that already has
// MaxConnsPerSource connections open to the same MX group, so each
// address stays within the limit a provider sets per address; when
// every address is at it, the connection waits for one to close.
//
// Cached connections are kept per MX group as before, and a delivery
// reuses only one from its own group's pool (or, for a group without a
// pool, one from the default address), so mail never leaves from an
// address its group was not given.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// SourcePool is the local addresses one queue group's connections leave
// from.
type SourcePool struct {
	Addrs []SourceAddr
	// MaxConnsPerSource caps the connections open at once from one
	// address to one MX group; 0 leaves only the group's MaxConns. Keep
	// MaxConns at most len(Addrs) × MaxConnsPerSource, or connections
	// wait for an address to come free.
	MaxConnsPerSource int
}

// SourceAddr is one local address and the name it gives in EHLO.
type SourceAddr struct {
	IP   netip.Addr
	HELO string // empty: Config.HELO
}

// sources holds the pools by queue group name.
type sources map[string]*sourcePool

type sourcePool struct {
	name  string
	addrs []SourceAddr
	max   int // per address and MX group; 0 none

	mu   sync.Mutex
	next int              // the address the next connection starts looking at
	open map[string][]int // by MX group key: connections open from each address
	wake chan struct{}    // closed and replaced when a connection closes
}

// checkSources validates the pools and fills in HELO names, in a copy.
func checkSources(cfg *Config) error {
	if len(cfg.Sources) == 0 {
		return nil
	}
	pools := make(map[string]SourcePool, len(cfg.Sources))
	for name, p := range cfg.Sources {
		p.Addrs = slices.Clone(p.Addrs)
		pools[name] = p
		if len(p.Addrs) == 0 {
			return fmt.Errorf("source addresses of queue group %s: none given", name)
		}
		if p.MaxConnsPerSource < 0 {
			return fmt.Errorf("source addresses of queue group %s: max connections per source %d is negative", name, p.MaxConnsPerSource)
		}
		seen := map[netip.Addr]bool{}
		for i, a := range p.Addrs {
			if !a.IP.IsValid() || a.IP.IsUnspecified() || a.IP.IsMulticast() {
				return fmt.Errorf("source address %v of queue group %s: not a unicast address", a.IP, name)
			}
			if seen[a.IP] {
				return fmt.Errorf("source address %v of queue group %s: given twice", a.IP, name)
			}
			seen[a.IP] = true
			if a.HELO == "" {
				p.Addrs[i].HELO = cfg.HELO
			} else if strings.ContainsAny(a.HELO, " \t\r\n") {
				return fmt.Errorf("HELO %q of source address %v: must be one word", a.HELO, a.IP)
			}
		}
	}
	cfg.Sources = pools
	return nil
}

// newSources opens the pools, checking that each address is one of this
// host's: bound to it, a socket must be able to listen.
func newSources(cfg map[string]SourcePool) (sources, error) {
	s := sources{}
	for name, p := range cfg {
		for _, a := range p.Addrs {
			ln, err := net.Listen("tcp", netip.AddrPortFrom(a.IP, 0).String())
			if err != nil {
				return nil, fmt.Errorf("source address %v of queue group %s is not an address of this host: %w", a.IP, name, err)
			}
			ln.Close()
		}
		s[name] = &sourcePool{name: name, addrs: p.Addrs, max: p.MaxConnsPerSource,
			open: map[string][]int{}, wake: make(chan struct{})}
	}
	return s, nil
}

// pool returns the pool of queue group, nil when it has none.
func (s sources) pool(group string) *sourcePool {
	if s == nil {
		return nil
	}
	return s[group]
}

// poolName names the source pool a connection of group belongs to: ""
// for the default address.
func (s sources) poolName(group string) string {
	if p := s.pool(group); p != nil {
		return p.name
	}
	return ""
}

// take reserves the next address with room for a connection to the MX
// group dest, waiting at most wait for one.
func (p *sourcePool) take(ctx context.Context, dest string, wait time.Duration) (int, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		p.mu.Lock()
		open := p.open[dest]
		if open == nil {
			open = make([]int, len(p.addrs))
			p.open[dest] = open
		}
		for k := range p.addrs {
			i := (p.next + k) % len(p.addrs)
			if p.max == 0 || open[i] < p.max {
				open[i]++
				p.next = i + 1
				p.mu.Unlock()
				return i, nil
			}
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-timer.C:
			return 0, fmt.Errorf("%w: every source address of queue group %s has %d connections open to %s", errBusy, p.name, p.max, dest)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// give returns address i's reservation for dest.
func (p *sourcePool) give(dest string, i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	open := p.open[dest]
	open[i]--
	idle := true
	for _, n := range open {
		idle = idle && n == 0
	}
	if idle {
		delete(p.open, dest)
	}
	close(p.wake)
	p.wake = make(chan struct{})
}

// sourceConn is a connection from a pool's address: closing it gives the
// address's reservation back, once.
type sourceConn struct {
	net.Conn
	once sync.Once
	give func()
}

func (c *sourceConn) Close() error {
	c.once.Do(c.give)
	return c.Conn.Close()
}

// dialFrom connects to relay for a delivery of queue group, from the
// next address of the group's pool if it has one. It returns the
// connection and the name to give in EHLO.
func (a *Agent) dialFrom(ctx context.Context, group string, d *destination, relay string) (net.Conn, string, error) {
	p := a.sources.pool(group)
	if p == nil {
		nc, err := a.dialer.DialContext(ctx, "tcp", relay)
		return nc, a.cfg.HELO, err
	}
	i, err := p.take(ctx, d.key, a.cfg.SlotWait)
	if err != nil {
		return nil, "", err
	}
	src := p.addrs[i]
	dialer := a.dialer
	dialer.LocalAddr = &net.TCPAddr{IP: src.IP.AsSlice()}
	nc, err := dialer.DialContext(ctx, "tcp", relay)
	if err != nil {
		p.give(d.key, i)
		return nil, "", err
	}
	return &sourceConn{Conn: nc, give: func() { p.give(d.key, i) }}, src.HELO, nil
}

// idleFrom returns the index in d.idle of the most recently used idle
// connection from source pool src, or -1. The pool's mutex is held.
func (d *destination) idleFrom(src string) int {
	for i := len(d.idle) - 1; i >= 0; i-- {
		if d.idle[i].src == src {
			return i
		}
	}
	return -1
}

// idleOther returns the oldest idle connection of d from another source
// pool than src, or nil: at the group's limit, it is closed to make room
// for one from src. The pool's mutex is held.
func (d *destination) idleOther(src string) *conn {
	for _, c := range d.idle {
		if c.src != src {
			return c
		}
	}
	return nil
}
