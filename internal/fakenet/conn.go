package fakenet

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// sinkListener counts connections and turns away those over a cap with a
// real 421 greeting, which go-smtp's Server has no hook for.
type sinkListener struct {
	net.Listener
	s *Sink
}

var (
	replyTooMany = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 5},
		Message: "Too many connections, try again later"}
	// As the big providers word it when one address opens too many.
	replyTooManyFromIP = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many concurrent connections from your IP address, try again later"}
)

func (l *sinkListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s := l.s
		ip := remoteIP(c)
		var reply *smtp.SMTPError
		if s.opts.ConnHook != nil {
			reply = s.opts.ConnHook(c.RemoteAddr().String())
		}
		s.mu.Lock()
		s.stats.Connections++
		s.open++
		s.stats.MaxOpenConns = max(s.stats.MaxOpenConns, s.open)
		switch {
		case reply != nil:
		case s.opts.MaxConns > 0 && s.active >= s.opts.MaxConns:
			reply = replyTooMany
		case s.opts.MaxConnsPerIP > 0 && s.perIP[ip] >= s.opts.MaxConnsPerIP:
			reply = replyTooManyFromIP
		}
		if reply != nil {
			s.stats.Rejected++
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.reject(c, reply)
			}()
			continue
		}
		s.active++
		s.perIP[ip]++
		s.stats.MaxConcurrentConns = max(s.stats.MaxConcurrentConns, s.active)
		s.mu.Unlock()
		tc := &trackedConn{s: s, ip: ip}
		var conn net.Conn = c
		if s.opts.RTT > 0 || s.opts.GreetDelay > 0 || s.opts.ReplyDelay > 0 {
			tc.rtt = newRTTConn(c, s.opts.RTT+s.opts.GreetDelay, s.opts.RTT+s.opts.ReplyDelay, s.quit)
			conn = tc.rtt
		}
		tc.batch = &batchConn{Conn: conn}
		tc.Conn = tc.batch
		return tc, nil
	}
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

// reject answers a connection the sink turns away, one round trip after
// it arrived as a real server's would, and closes it.
func (s *Sink) reject(c net.Conn, reply *smtp.SMTPError) {
	defer func() {
		// Uncounted before the close the client sees, as trackedConn
		// does: a client that dials again at once must not be counted
		// beside a connection already gone.
		s.mu.Lock()
		s.open--
		s.mu.Unlock()
		c.Close()
	}()
	if !sleep(s.opts.RTT, s.quit, nil) {
		return
	}
	_ = c.SetDeadline(time.Now().Add(s.opts.Timeout))
	line := strconv.Itoa(reply.Code)
	if ec := reply.EnhancedCode; ec != (smtp.EnhancedCode{}) && ec != smtp.NoEnhancedCode {
		line += fmt.Sprintf(" %d.%d.%d", ec[0], ec[1], ec[2])
	}
	_, _ = io.WriteString(c, line+" "+reply.Message+"\r\n")
}

// sleep waits d unless one of the channels closes first; it reports
// whether the whole time passed.
func sleep(d time.Duration, quit, stop <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-quit:
	case <-stop:
	}
	return false
}

// trackedConn is one session's connection: it lowers the sink's counts
// exactly once when closed and counts the session's MAIL commands.
type trackedConn struct {
	net.Conn
	s     *Sink
	ip    string
	batch *batchConn
	rtt   *rttConn // nil without emulated delays
	mails int      // MAIL FROMs accepted; only the session's goroutine touches it
	once  sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.active--
		c.s.open--
		if c.s.perIP[c.ip]--; c.s.perIP[c.ip] <= 0 {
			delete(c.s.perIP, c.ip)
		}
		c.s.mu.Unlock()
		if c.rtt != nil {
			c.rtt.abort() // a tarpit's greeting must not hold the close
		}
	})
	return c.Conn.Close()
}
