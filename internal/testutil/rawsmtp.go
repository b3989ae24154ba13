package testutil

import (
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// RawSMTP is an SMTP client that sends exactly what it is told,
// pipelined or not, and reads the replies as they come: for tests of
// what a server makes of what a well-behaved client never sends.
type RawSMTP struct {
	Conn net.Conn
	Text *textproto.Conn
}

// DialRawSMTP connects to addr from the loopback address from ("" for
// any), with the whole session due within deadline, and reads the
// greeting. The connection is closed when the test ends.
func DialRawSMTP(t testing.TB, addr, from string, deadline time.Duration) (*RawSMTP, string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(deadline))
	s := &RawSMTP{}
	s.SetConn(c)
	greeting, err := s.Reply()
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return s, greeting
}

// SetConn makes c the connection the client talks on, as a TLS client
// over the old one is after STARTTLS.
func (s *RawSMTP) SetConn(c net.Conn) { s.Conn, s.Text = c, textproto.NewConn(c) }

// Reply reads one reply as "CODE text" (the text of its last line). A
// reply with an unexpected code is no error: the code is in the text.
func (s *RawSMTP) Reply() (string, error) {
	code, msg, err := s.Text.ReadResponse(0)
	if err != nil {
		if _, ok := err.(*textproto.Error); !ok {
			return "", err
		}
	}
	lines := strings.Split(msg, "\n")
	return fmt.Sprintf("%d %s", code, lines[len(lines)-1]), nil
}
