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
// (RFC 2920) pays one RTT for the batch. The greeting is delayed by one
// RTT too, standing in for the TCP handshake.
type rttConn struct {
	net.Conn
	rtt time.Duration

	mu      sync.Mutex
	greeted bool
	wrote   bool // a reply went out since the last read
}

func newRTTConn(c net.Conn, rtt time.Duration) *rttConn {
	return &rttConn{Conn: c, rtt: rtt}
}

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
		time.Sleep(c.rtt)
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
		time.Sleep(c.rtt)
	}
	return c.Conn.Write(p)
}
