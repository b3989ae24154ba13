package fakenet

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// BlackHoleProbe is how long a connect to a new BlackHole must hang for
// NewBlackHole to accept it as one.
const BlackHoleProbe = 300 * time.Millisecond

// BlackHole is an address whose TCP handshake never completes, like a
// mail host behind a firewall that drops packets: a connect hangs until
// the client gives up, and is never refused. On loopback, where nothing
// drops packets, it is a listening socket with the smallest accept queue
// (listen(2) with backlog 0) that nobody accepts from, its queue filled
// by the black hole's own connections: Linux drops every further SYN
// while the accept queue is full, so the client's SYNs go unanswered.
// NewBlackHole checks that a connect really hangs before returning.
type BlackHole struct {
	fd   int
	addr string
	fill []net.Conn
}

// NewBlackHole makes addr ("127.3.0.1:25"; port 0 picks one) a black
// hole. Only IPv4 loopback addresses are allowed.
func NewBlackHole(addr string) (*BlackHole, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("black hole %q: %w", addr, err)
	}
	ip := net.ParseIP(host).To4()
	port, perr := strconv.Atoi(portStr)
	if ip == nil || !ip.IsLoopback() || perr != nil {
		return nil, fmt.Errorf("black hole %q: want IPv4 loopback host:port", addr)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("black hole %s: socket: %w", addr, err)
	}
	b := &BlackHole{fd: fd}
	sa := &unix.SockaddrInet4{Port: port}
	copy(sa.Addr[:], ip)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		b.Close()
		return nil, fmt.Errorf("black hole %s: SO_REUSEADDR: %w", addr, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		b.Close()
		return nil, fmt.Errorf("black hole %s: bind: %w", addr, err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		b.Close()
		return nil, fmt.Errorf("black hole %s: listen: %w", addr, err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("black hole %s: getsockname: %w", addr, err)
	}
	b.addr = net.JoinHostPort(host, strconv.Itoa(got.(*unix.SockaddrInet4).Port))
	if err := b.fillQueue(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// fillQueue connects until a connect hangs for BlackHoleProbe: the queue
// is full from then on, since nothing ever accepts.
func (b *BlackHole) fillQueue() error {
	for range 8 {
		c, err := net.DialTimeout("tcp", b.addr, BlackHoleProbe)
		if err == nil {
			b.fill = append(b.fill, c)
			continue
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return nil
		}
		return fmt.Errorf("black hole %s: connect: %w (want it to hang)", b.addr, err)
	}
	return fmt.Errorf("black hole %s: still completing handshakes after %d connections", b.addr, len(b.fill))
}

// Addr is the black hole's host:port.
func (b *BlackHole) Addr() string { return b.addr }

// Close frees the address.
func (b *BlackHole) Close() error {
	for _, c := range b.fill {
		c.Close()
	}
	if b.fd < 0 {
		return nil
	}
	err := unix.Close(b.fd)
	b.fd = -1
	if err != nil {
		return fmt.Errorf("black hole %s: close: %w", b.addr, err)
	}
	return nil
}
