package ingress

// Per-connection limits that go-smtp leaves to its backend. go-smtp
// answers EHLO, NOOP, RSET, VRFY, HELP and bad syntax itself without
// calling the session, counts only accepted RCPTs against MaxRecipients
// and has no session lifetime; forking it for that would be worse than
// watching each connection from below. guardConn wraps the net.Conn
// go-smtp serves:
//
//   - It counts errors and junk commands as Postfix's smtpd does
//     (smtpd_hard_error_limit, smtpd_junk_command_limit,
//     smtpd_recipient_overshoot_limit): every rejected command is an
//     error; every command go-smtp answers without the session is junk,
//     and past the junk limit each one is an error too; a post accepted
//     with 250 forgives both. At the error limit the client gets
//     "421 4.7.0 Error: too many errors" and the connection is closed.
//     The session (limits.go) counts its own replies as it gives them;
//     the rest are seen here, on their way out, one reply per command.
//   - It clamps every deadline go-smtp sets to the session's lifetime, so
//     no stream of commands, however slow or idle, keeps a session open
//     past it.
//   - It hangs up with a lingering close: the write side is shut after
//     the last reply and whatever the client had pipelined is read and
//     dropped for a moment before the socket closes. Closing with unread
//     input makes the kernel reset the connection, and the client would
//     lose the 421 that says why.
//   - It gives back the session's slot, overall and per client, on close.
//
// It also reads for go-smtp, a line at a time (inbound.go), and runs
// STARTTLS itself (starttls.go), so everything above holds under TLS:
// the guard sees the dialogue in plaintext from the first byte to the
// last.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// maxReplyHead is how much of each reply line is kept for classifying
// it: the code, the enhanced code and a word.
const maxReplyHead = 32

// A lingering close reads and drops at most this much for at most this
// long before it closes the socket anyway.
const (
	lingerBytes = 1 << 20
	lingerTime  = 5 * time.Second
)

// guardConn is one SMTP connection as go-smtp sees it.
type guardConn struct {
	net.Conn
	l      *loadListener
	client string    // clientKey of the peer, for the per-client cap
	remote string    // the peer's address, for the log
	end    time.Time // the session's lifetime ends here
	in     inbound   // the read side (inbound.go)

	mu        sync.Mutex
	tconn     *tls.Conn // the session's TLS once STARTTLS is done; nil before
	needHello bool      // STARTTLS is done and the client has not said EHLO again
	inTx      bool      // a MAIL was accepted and its transaction is not over
	replyCode int       // the first final reply since the last command line was read; 0 none
	head      []byte    // the start of the reply line being written
	inLine    bool      // head holds a line whose end has not been written
	claimed   bool      // the next reply is the session's own, counted already
	errors    int
	junk      int
	overshoot int  // RCPTs past the limit in this transaction
	closing   bool // close once the reply being written is out
	cut       bool // the error limit was reached
	expired   bool // the lifetime ran out (logged once)
	once      sync.Once
	lingering atomic.Bool // hung up: the write side is shut, input is dropped
}

// answer is how a reply counts.
type answer int

const (
	answerOK     answer = iota // no error
	answerError                // a rejected command
	answerExcess               // 452 4.5.3: an error only past the overshoot allowance
)

// own counts a reply the session is about to give and marks it so the
// write side does not count it again. It reports whether this reply
// reaches the error limit; the session then answers errTooManyErrors
// instead and the connection closes after it.
func (g *guardConn) own(a answer) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cut {
		return true
	}
	g.claimed = true
	g.count(a)
	if g.errors < g.l.s.cfg.MaxErrors {
		return false
	}
	g.cut, g.closing = true, true
	g.logCut()
	return true
}

// count adds one reply of kind a to the error count; g.mu is held.
func (g *guardConn) count(a answer) {
	switch a {
	case answerError:
		g.errors++
	case answerExcess:
		g.overshoot++
		if g.overshoot > g.l.s.cfg.RecipientOvershoot {
			g.errors++
		}
	}
}

// hungUp reports whether the connection is being cut for errors: the
// session then answers pipelined commands still buffered without work.
func (g *guardConn) hungUp() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cut
}

// newTransaction starts a transaction's overshoot count afresh (RSET,
// EHLO, or the end of DATA).
func (g *guardConn) newTransaction() {
	g.mu.Lock()
	g.overshoot = 0
	g.mu.Unlock()
}

// forgive clears the error and junk counts once a post is accepted, as
// Postfix does: a client that delivers mail is not an abuser.
func (g *guardConn) forgive() {
	g.mu.Lock()
	g.errors, g.junk = 0, 0
	g.mu.Unlock()
}

func (g *guardConn) logCut() {
	g.l.s.log.Warn("session closed: too many errors", "client", g.remote,
		"errors", g.errors, "junk_commands", g.junk, "max_errors", g.l.s.cfg.MaxErrors)
}

func (g *guardConn) Write(p []byte) (int, error) {
	if g.in.last == cmdStartTLS && bytes.Equal(p, goSMTPNoTLS) {
		return len(p), g.startTLS()
	}
	g.mu.Lock()
	extra, at, closeNow := g.observe(p)
	c := g.cur()
	g.mu.Unlock()
	if g.lingering.Load() {
		return 0, net.ErrClosed // go-smtp answering what was pipelined after the hang-up
	}
	n, err := c.Write(p[:at])
	if extra != nil && err == nil {
		_, err = c.Write(extra)
	}
	if err == nil && at < len(p) {
		var m int
		m, err = c.Write(p[at:])
		n += m
	}
	g.l.s.counters.bytesOut.Add(int64(n + len(extra)))
	if closeNow {
		g.hangUp()
	}
	return n, err
}

// cur is the connection the session speaks over: the TCP connection,
// or TLS over it once STARTTLS is done.
func (g *guardConn) cur() net.Conn {
	if g.tconn != nil {
		return g.tconn
	}
	return g.Conn
}

// hangUp ends the session after its last reply: no more writes, and
// reads end, so go-smtp closes it; Close lingers.
func (g *guardConn) hangUp() {
	g.lingering.Store(true)
	if g.tlsOn() {
		_ = g.tconn.CloseWrite() // close_notify
	}
	if tc, ok := g.Conn.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
}

// observe follows the reply lines in p and classifies each final one
// (a line "CODE text" rather than "CODE-text"). It returns bytes to add
// after p[:at]: the 421 when the error limit is reached, or STARTTLS in
// the list of EHLO's extensions; and whether to close after p. g.mu is
// held.
func (g *guardConn) observe(p []byte) (extra []byte, at int, closeNow bool) {
	at = len(p)
	for off := 0; off < len(p); {
		i := bytes.IndexByte(p[off:], '\n')
		chunk := p[off:]
		if i >= 0 {
			chunk = p[off : off+i]
		}
		if !g.inLine {
			g.head, g.inLine = g.head[:0], true
		}
		if room := maxReplyHead - len(g.head); room > 0 {
			g.head = append(g.head, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			return extra, at, false
		}
		off += i + 1
		g.inLine = false
		if g.hello(g.head) && extra == nil {
			extra, at = g.offerTLS(), off
		}
		if len(g.head) < 3 || (len(g.head) > 3 && g.head[3] != ' ' && g.head[3] != '\r') {
			continue // a continuation line ("250-PIPELINING"), or not a reply
		}
		if g.replyCode == 0 {
			g.replyCode = replyCode(g.head)
		}
		switch {
		case g.closing:
			g.closing = false
			return extra, at, true // the session's last reply is out
		case g.cut:
			return extra, at, false // closed already; go-smtp drains what the client pipelined
		}
		if g.classify(g.head) {
			g.cut = true
			g.logCut()
			host := g.l.s.cfg.Hostname
			return []byte(fmt.Sprintf("421 4.7.0 %s Error: too many errors\r\n", host)), len(p), true
		}
	}
	return extra, at, false
}

// replyCode is the code a reply line starts with, 0 if none.
func replyCode(line []byte) int {
	code := 0
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return 0
		}
		code = code*10 + int(c-'0')
	}
	return code
}

// classify counts one final reply that go-smtp wrote and reports whether
// it reaches the error limit.
func (g *guardConn) classify(line []byte) bool {
	if g.claimed {
		g.claimed = false
		return false
	}
	code := replyCode(line)
	if code == 0 {
		return false
	}
	switch {
	case code == 220 || code == 221 || code == 354:
		return false // greeting, QUIT, go ahead with DATA: part of a transaction
	case bytes.HasPrefix(line, []byte("250 2.0.0 Continue")):
		return false // go-smtp's reply to each BDAT chunk
	}
	g.junk++
	if g.junk > g.l.s.cfg.MaxJunkCommands {
		g.errors++
	}
	switch {
	case bytes.HasPrefix(line, []byte("452 4.5.3")):
		g.count(answerExcess) // go-smtp's own too-many-recipients reply
	case code >= 400:
		g.count(answerError)
	}
	return g.errors >= g.l.s.cfg.MaxErrors
}

// SetReadDeadline keeps every read deadline within the session's
// lifetime.
func (g *guardConn) SetReadDeadline(t time.Time) error {
	return g.Conn.SetReadDeadline(g.clamp(t, 0))
}

// SetWriteDeadline keeps write deadlines within the lifetime plus the
// time to write a last reply, so a client that stops reading cannot
// hold the session either.
func (g *guardConn) SetWriteDeadline(t time.Time) error {
	return g.Conn.SetWriteDeadline(g.clamp(t, rejectTimeout))
}

func (g *guardConn) SetDeadline(t time.Time) error {
	return errors.Join(g.SetReadDeadline(t), g.SetWriteDeadline(t))
}

func (g *guardConn) clamp(t time.Time, grace time.Duration) time.Time {
	if end := g.end.Add(grace); t.IsZero() || t.After(end) {
		return end
	}
	return t
}

// Close gives the session's slot back exactly once, when go-smtp (or
// Shutdown) closes the connection; after a hang-up, once the lingering
// close is over.
func (g *guardConn) Close() error {
	closed := false
	g.once.Do(func() {
		if !g.lingering.Load() {
			g.l.release(g.client)
			return
		}
		closed = true
		g.l.rejects.Add(1)
		go func() {
			defer g.l.rejects.Done()
			_ = g.Conn.SetReadDeadline(time.Now().Add(lingerTime))
			_, _ = io.Copy(io.Discard, io.LimitReader(g.Conn, lingerBytes))
			g.Conn.Close()
			g.l.release(g.client)
		}()
	})
	if closed {
		return nil
	}
	return g.Conn.Close()
}
