package fakenet

import (
	"io"
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
	mu     sync.Mutex
	buf    []byte
	hangup hangup
}

type hangup int

const (
	hangupNo   hangup = iota
	hangupNext        // the next reply is the last one
	hangupDone        // later replies are dropped and reads end
)

// hangUpAfterReply makes the next reply the last: go-smtp has no way to
// close a session after a 421, so the connection drops whatever the
// server would answer to commands pipelined behind it and reports the
// end of input once the 421 is out, as a real server that closes does.
func (c *batchConn) hangUpAfterReply() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hangup = hangupNext
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.hangup {
	case hangupDone:
		return len(p), nil
	case hangupNext:
		c.hangup = hangupDone
	}
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
	c.mu.Lock()
	done := c.hangup == hangupDone
	c.mu.Unlock()
	if done {
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

func (c *batchConn) Close() error {
	_ = c.flush()
	return c.Conn.Close()
}
