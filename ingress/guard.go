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
// Reading replies on the way out needs the plaintext stream: once
// STARTTLS is under way (its 220, or a session that finds TLS under it:
// setTLS) the counting of go-smtp's own replies is left off.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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

	mu        sync.Mutex
	head      []byte // the start of the reply line being written
	inLine    bool   // head holds a line whose end has not been written
	claimed   bool   // the next reply is the session's own, counted already
	tls       bool   // replies are encrypted: count the session's only
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

// setTLS records whether the session runs over TLS.
func (g *guardConn) setTLS(on bool) {
	g.mu.Lock()
	g.tls = on
	g.mu.Unlock()
}

func (g *guardConn) logCut() {
	g.l.s.log.Warn("session closed: too many errors", "client", g.remote,
		"errors", g.errors, "junk_commands", g.junk, "max_errors", g.l.s.cfg.MaxErrors)
}

func (g *guardConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	var bye []byte
	closeNow := false
	if g.tls {
		closeNow = g.closing // one reply per Write of the TLS layer above
	} else {
		bye, closeNow = g.observe(p)
	}
	g.mu.Unlock()
	if g.lingering.Load() {
		return 0, net.ErrClosed // go-smtp answering what was pipelined after the hang-up
	}
	n, err := g.Conn.Write(p)
	if bye != nil && err == nil {
		_, _ = g.Conn.Write(bye)
	}
	if closeNow {
		g.hangUp()
	}
	return n, err
}

// hangUp ends the session after its last reply: no more writes, and
// reads end, so go-smtp closes it; Close lingers.
func (g *guardConn) hangUp() {
	g.lingering.Store(true)
	if tc, ok := g.Conn.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
}

// observe follows the reply lines in p and classifies each final one
// (a line "CODE text" rather than "CODE-text"). It returns the 421 to
// add when the error limit is reached, and whether to close after p.
func (g *guardConn) observe(p []byte) (bye []byte, closeNow bool) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !g.inLine {
			g.head, g.inLine = g.head[:0], true
		}
		if room := maxReplyHead - len(g.head); room > 0 {
			g.head = append(g.head, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			return nil, false
		}
		p = p[i+1:]
		g.inLine = false
		if len(g.head) < 3 || (len(g.head) > 3 && g.head[3] != ' ' && g.head[3] != '\r') {
			continue // a continuation line ("250-PIPELINING"), or not a reply
		}
		switch {
		case g.closing:
			g.closing = false
			return nil, true // the session's last reply is out
		case g.cut:
			return nil, false // closed already; go-smtp drains what the client pipelined
		}
		if g.classify(g.head) {
			g.cut = true
			g.logCut()
			host := g.l.s.cfg.Hostname
			return []byte(fmt.Sprintf("421 4.7.0 %s Error: too many errors\r\n", host)), true
		}
	}
	return nil, false
}

// classify counts one final reply that go-smtp wrote and reports whether
// it reaches the error limit.
func (g *guardConn) classify(line []byte) bool {
	if g.claimed {
		g.claimed = false
		return false
	}
	code := 0
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return false
		}
		code = code*10 + int(c-'0')
	}
	switch {
	case bytes.HasPrefix(line, []byte("220 2.0.0 Ready to start TLS")):
		g.tls = true // what follows is the TLS handshake, then encrypted replies
		return false
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

// Read turns the end of the session's lifetime into a 421 of its own,
// rather than go-smtp's "Idle timeout", and closes.
func (g *guardConn) Read(p []byte) (int, error) {
	if g.lingering.Load() {
		return 0, net.ErrClosed
	}
	n, err := g.Conn.Read(p)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || time.Now().Before(g.end) {
		return n, err
	}
	g.mu.Lock()
	first, plain := !g.expired, !g.tls
	g.expired = true
	g.mu.Unlock()
	if first {
		g.l.s.log.Info("session closed: lifetime reached", "client", g.remote,
			"session_timeout", g.l.s.cfg.SessionTimeout)
	}
	if !plain {
		return n, err // go-smtp answers 421 4.4.2 through TLS
	}
	_ = g.Conn.SetWriteDeadline(time.Now().Add(rejectTimeout))
	_, _ = io.WriteString(g.Conn, fmt.Sprintf("421 4.4.2 %s Error: session time limit exceeded\r\n", g.l.s.cfg.Hostname))
	g.hangUp()
	return n, fmt.Errorf("session lifetime: %w", net.ErrClosed)
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
