package resolver

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// The resolver's UDP transport.
//
// Opening, connecting and closing a socket per query (as Go's own
// resolver does) was a quarter of the server's CPU in a fan-out, so
// sockets are kept: each DNS server gets a pool of up to udpPoolSize
// sockets, each bound to a port drawn from crypto/rand in the kernel's
// ephemeral range and connected to the server. A query opens a new
// socket until the pool is full, then takes a random idle one; a socket
// is closed after udpMaxQueries queries, after udpMaxAge, or after any
// error. An off-path attacker forging answers must therefore hit one of
// a few live ports (about 16 of 28,000) and the query's random 16-bit
// ID at once, and a port is never in use for long; the cost is one new
// socket per ~100 queries instead of one per query.
//
// An answer is taken only from the server's address and port, with QR
// set, the query's ID and the query's question. Anything else arriving
// on the socket (a late answer to an earlier query, a forgery, garbage)
// is dropped and the wait goes on until the query's deadline, so a
// forged packet cannot even cut a query short.
const (
	udpPoolSize   = 16
	udpMaxQueries = 100
	udpMaxAge     = 30 * time.Second
	udpBufSize    = 4096 // answers are asked to fit ednsUDPSize; some servers exceed it
)

// udpSock is one socket to one server, used by one query at a time.
type udpSock struct {
	conn    *net.UDPConn
	server  netip.AddrPort // where answers must come from
	created time.Time
	queries int
	buf     []byte
}

type udpPool struct {
	idle []*udpSock
	open int // sockets of this server, idle or in use
}

// portRange is the kernel's ephemeral port range: ports there are meant
// for outgoing connections, so binding them takes none a service wants.
func portRange() (lo, hi int) {
	lo, hi = 32768, 60999 // Linux's default
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var a, b int
	if n, _ := fmt.Sscan(strings.TrimSpace(string(data)), &a, &b); n == 2 && a > 1023 && a < b && b < 65536 {
		return a, b
	}
	return lo, hi
}

func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it aborts the program instead)
	return binary.BigEndian.Uint32(b[:])
}

// getUDP takes a socket for server: a fresh one while the pool is not
// full, else a random idle one.
func (r *Resolver) getUDP(server string) (*udpSock, error) {
	r.udpMu.Lock()
	if r.udp == nil {
		r.udp = map[string]*udpPool{}
	}
	p := r.udp[server]
	if p == nil {
		p = &udpPool{}
		r.udp[server] = p
	}
	if len(p.idle) > 0 && p.open >= udpPoolSize {
		i := int(randUint32() % uint32(len(p.idle)))
		s := p.idle[i]
		p.idle[i] = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		r.udpMu.Unlock()
		return s, nil
	}
	p.open++
	r.udpMu.Unlock()
	s, err := r.openUDP(server)
	if err != nil {
		r.udpMu.Lock()
		p.open--
		r.udpMu.Unlock()
		return nil, err
	}
	return s, nil
}

// putUDP returns s after a query; ok is false if the query failed on it.
func (r *Resolver) putUDP(server string, s *udpSock, ok bool) {
	s.queries++
	r.udpMu.Lock()
	p := r.udp[server]
	keep := ok && s.queries < r.udpMaxQueries && time.Since(s.created) < r.udpMaxAge && len(p.idle) < udpPoolSize
	if keep {
		p.idle = append(p.idle, s)
	} else {
		p.open--
	}
	r.udpMu.Unlock()
	if !keep {
		s.conn.Close()
	}
}

// openUDP binds a socket to a random port of the ephemeral range and
// connects it to server. After ten ports in use it lets the kernel pick
// one (Linux picks at random too).
func (r *Resolver) openUDP(server string) (*udpSock, error) {
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return nil, err
	}
	var conn *net.UDPConn
	for range 10 {
		port := r.portLo + int(randUint32()%uint32(r.portHi-r.portLo+1))
		conn, err = net.DialUDP("udp", &net.UDPAddr{Port: port}, raddr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		conn, err = net.DialUDP("udp", nil, raddr)
	}
	if err != nil {
		return nil, err
	}
	ap := raddr.AddrPort()
	return &udpSock{conn: conn, server: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
		created: time.Now(), buf: make([]byte, udpBufSize)}, nil
}

// exchangeUDP sends req to server over a pooled socket and waits until
// deadline for the answer to it.
func (r *Resolver) exchangeUDP(req *dns.Msg, server string, deadline time.Time) (*dns.Msg, error) {
	wire, err := req.Pack()
	if err != nil {
		return nil, err
	}
	s, err := r.getUDP(server)
	if err != nil {
		return nil, err
	}
	m, err := s.exchange(req, wire, deadline)
	r.putUDP(server, s, err == nil)
	return m, err
}

func (s *udpSock) exchange(req *dns.Msg, wire []byte, deadline time.Time) (*dns.Msg, error) {
	if err := s.conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if _, err := s.conn.Write(wire); err != nil {
		return nil, err
	}
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(s.buf)
		if err != nil {
			return nil, err
		}
		if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != s.server {
			continue // a connected socket never gets these; say so anyway
		}
		if m, ok := answerTo(req, s.buf[:n]); ok {
			return m, nil
		}
	}
}

// answerTo parses pkt and reports whether it is the answer to req: QR
// set, same ID, same single question (name compared case-insensitively).
// A truncated answer whose records do not parse still counts, so the
// caller can retry over TCP.
func answerTo(req *dns.Msg, pkt []byte) (*dns.Msg, bool) {
	m := new(dns.Msg)
	if err := m.Unpack(pkt); err != nil && !m.Truncated {
		return nil, false
	}
	q := req.Question[0]
	if !m.Response || m.Id != req.Id || len(m.Question) != 1 ||
		!strings.EqualFold(m.Question[0].Name, q.Name) || m.Question[0].Qtype != q.Qtype || m.Question[0].Qclass != q.Qclass {
		return nil, false
	}
	return m, true
}

// Close closes the sockets kept for later queries. The resolver stays
// usable: a later query opens new ones.
func (r *Resolver) Close() {
	r.udpMu.Lock()
	defer r.udpMu.Unlock()
	for _, p := range r.udp {
		for _, s := range p.idle {
			s.conn.Close()
		}
		p.open -= len(p.idle)
		p.idle = nil
	}
}
