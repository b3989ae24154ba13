package fakenet

import (
	"net"
	"sync"
	"time"
)

// rttConn emulates a WAN round trip on the server's side of a loopback
// connection, where netem is not available. A plain sleep before every
// reply would charge each pipelined command a round trip; instead the
// delay falls on the first read after each write: a client that waits
// for every reply pays one RTT per command, one that sends a batch
// (RFC 2920) pays one RTT for the batch. The greeting is delayed too,
// standing in for the TCP handshake (and, longer, for a tarpit).
type rttConn struct {
	net.Conn
	greet, rtt time.Duration
	quit       <-chan struct{} // the sink's: closed when it stops
	stop       chan struct{}   // closed by abort
	stopOnce   sync.Once

	mu      sync.Mutex
	greeted bool
	wrote   bool // a reply went out since the last read
}

func newRTTConn(c net.Conn, greet, rtt time.Duration, quit <-chan struct{}) *rttConn {
	return &rttConn{Conn: c, greet: greet, rtt: rtt, quit: quit, stop: make(chan struct{})}
}

// abort ends any delay in progress and skips later ones: the connection
// is closing.
func (c *rttConn) abort() { c.stopOnce.Do(func() { close(c.stop) }) }

func (c *rttConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	owed := n > 0 && c.wrote
	if owed {
		c.wrote = false
	}
	c.mu.Unlock()
	// Sleeping after the data arrived, not before reading, charges the
	// RTT from when the client sent, not from when the server got round
	// to reading: client think time is not double-counted.
	if owed {
		sleep(c.rtt, c.quit, c.stop)
	}
	return n, err
}

func (c *rttConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	first := !c.greeted
	c.greeted = true
	c.wrote = true
	c.mu.Unlock()
	if first {
		sleep(c.greet, c.quit, c.stop)
	}
	return c.Conn.Write(p)
}
