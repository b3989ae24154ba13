package fakenet

import (
	"net"
	"sync"
)

// batchConn holds the server's replies until it next reads or closes, as
// a pipelining MTA does (RFC 2920 §3.2: "the server ... SHOULD NOT
// flush its output until it has no more input to process"). go-smtp
// writes every reply at once, so a pipelined batch of 100 RCPTs would
// cost the sink 100 writes; buffered, the replies to everything the
// server had already read go out together. A server reads only when its
// input is used up, so a client waiting for a reply always gets it.
type batchConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// flush writes what is held; the caller reads or closes next.
func (c *batchConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

func (c *batchConn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *batchConn) Close() error {
	_ = c.flush()
	return c.Conn.Close()
}
