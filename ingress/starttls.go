package ingress

// STARTTLS (RFC 3207), run by the connection guard rather than by
// go-smtp, so that the guard's limits and counts go on under TLS and no
// plaintext sent after the command is ever read as if it came through
// TLS. go-smtp gets no TLS configuration: it answers STARTTLS with
// "502 5.5.1 TLS not supported", and the guard, seeing that reply to a
// STARTTLS line it handed up, answers in its place: 220 and the
// handshake, after which it reads and writes through TLS; or a refusal.
// It adds STARTTLS to the extensions EHLO lists while TLS is not on.
//
// After the handshake the client must say EHLO again (RFC 3207 §4.2:
// the server forgets what it learned before); until it does, MAIL is
// refused.

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"strings"
	"time"
)

// goSMTPNoTLS is go-smtp's answer to STARTTLS without a TLS config.
var goSMTPNoTLS = []byte("502 5.5.1 TLS not supported\r\n")

// handshakeTimeout bounds the TLS handshake (within the lifetime).
const handshakeTimeout = time.Minute

// startTLS answers the STARTTLS go-smtp read last: a refusal, or 220
// and the handshake. An error closes the session.
func (g *guardConn) startTLS() error {
	in := &g.in
	line := strings.TrimRight(string(in.lastLine), "\r\n")
	in.last, in.lastLine = cmdOther, nil
	cfg := g.l.s.cfg.TLS
	g.mu.Lock()
	on, inTx := g.tconn != nil, g.inTx
	g.mu.Unlock()
	switch {
	case cfg == nil:
		return g.say("502 5.5.1 Error: command not implemented")
	case on:
		return g.say("554 5.5.1 Error: TLS already active")
	case strings.TrimRight(line, " ") != line[:len("STARTTLS")]:
		return g.say("501 5.5.4 Syntax: STARTTLS")
	case inTx:
		return g.say("503 5.5.1 Error: MAIL transaction in progress")
	case !in.oneLine || in.buffered():
		// The client sent more after STARTTLS without waiting for the
		// 220 (RFC 3207 §4: it must not). Those bytes are plaintext and
		// are dropped, never read as if they came through TLS
		// (CVE-2011-0411); such a client is broken or an attacker.
		g.l.s.refusals.log(slog.LevelWarn, "STARTTLS refused: commands pipelined after it", "client", g.remote)
		g.l.s.countRefused("starttls_pipelining")
		in.out, in.off, in.buf = nil, 0, in.buf[:0]
		g.mu.Lock()
		g.closing = true
		g.mu.Unlock()
		return g.say("554 5.5.0 Error: command pipelined after STARTTLS; closing")
	}
	if _, err := g.Conn.Write([]byte("220 2.0.0 Ready to start TLS\r\n")); err != nil {
		return err
	}
	_ = g.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Server(g.Conn, cfg)
	if err := tc.Handshake(); err != nil {
		g.l.s.refusals.log(slog.LevelInfo, "TLS handshake failed", "client", g.remote, "err", err)
		g.hangUp()
		return err
	}
	g.mu.Lock()
	g.tconn, g.needHello = tc, true
	g.head, g.inLine = g.head[:0], false
	g.mu.Unlock()
	return nil
}

// say writes a reply of the guard's own, counted as go-smtp's are.
func (g *guardConn) say(reply string) error {
	_, err := g.Write([]byte(reply + "\r\n"))
	return err
}

// hello reports whether line starts go-smtp's reply to EHLO or HELO,
// which also ends the wait for a new one after STARTTLS. g.mu is held.
func (g *guardConn) hello(line []byte) bool {
	ehlo := bytes.HasPrefix(line, []byte("250-Hello "))
	if ehlo || bytes.HasPrefix(line, []byte("250 2.0.0 Hello ")) {
		g.needHello = false
	}
	return ehlo
}

// offerTLS is the line to add to EHLO's list of extensions: STARTTLS
// when TLS is configured and not on yet. g.mu is held.
func (g *guardConn) offerTLS() []byte {
	if g.l.s.cfg.TLS == nil || g.tconn != nil {
		return nil
	}
	return []byte("250-STARTTLS\r\n")
}

// tlsOn reports whether the session runs over TLS.
func (g *guardConn) tlsOn() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tconn != nil
}

// tlsState is the session's TLS state, if it has TLS.
func (g *guardConn) tlsState() (tls.ConnectionState, bool) {
	g.mu.Lock()
	tc := g.tconn
	g.mu.Unlock()
	if tc == nil {
		return tls.ConnectionState{}, false
	}
	return tc.ConnectionState(), true
}

// helloPending reports whether STARTTLS is done and no EHLO has followed.
func (g *guardConn) helloPending() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.needHello
}

// setTransaction records whether a mail transaction is open.
func (g *guardConn) setTransaction(open bool) {
	g.mu.Lock()
	g.inTx = open
	g.mu.Unlock()
}
