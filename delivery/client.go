package delivery

import (
	"bufio"
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// conn is one outbound SMTP connection, past the greeting and EHLO (and
// STARTTLS when used), ready for mail transactions. One goroutine uses it
// at a time; between uses it rests in the connection cache.
//
// The client is written on net/textproto rather than go-smtp's because it
// must pipeline (RFC 2920) and be reused across envelopes, which go-smtp's
// client does not do.
type conn struct {
	nc    net.Conn // the session: raw, or TLS over raw
	raw   net.Conn // the TCP connection, for the half-close in close
	tp    *textproto.Conn
	host  string // MX host name, for TLS and messages
	relay string // host:port dialled
	src   string // the source pool it left from, "" for the default address (sources.go)
	helo  string // the name it gave in EHLO
	ext   map[string]string
	tls   bool
	cfg   *Config
	// greeted: the server said 220, so it counts the session (pool's
	// greeted) until it closes it.
	greeted bool

	created   time.Time
	greetTook time.Duration // from connect to the greeting: long for a tarpit
	txns      int           // transactions started on this connection
	dest      *destination  // the MX group whose slot it holds
	elem      *list.Element // in the pool's idle list while cached
	idleSince time.Time     // when it was last put in the cache
	broken    bool          // the server closed, or an I/O error: never reuse
}

// dial connects to relay, reads the greeting, says EHLO and, unless tls
// mode forbids it, upgrades with STARTTLS. A failed handshake under
// opportunistic TLS is retried once in plain text, since nothing in
// opportunistic TLS may block delivery.
// The failure is remembered for tlsRetryAfter so the next connections
// to that relay go straight to plain text.
func (a *Agent) dial(ctx context.Context, d *destination, group, host, relay string, mode TLSMode) (*conn, error) {
	if mode == TLSOpportunistic && a.tlsBroken.recent(relay) {
		mode = TLSNone
	}
	c, err := a.dialOnce(ctx, d, group, host, relay, mode)
	var te *tlsError
	if mode == TLSOpportunistic && errors.As(err, &te) {
		a.log.Info("TLS failed, retrying without TLS", slog.String("relay", relay), slog.String("error", err.Error()))
		a.tlsBroken.add(relay)
		c, err = a.dialOnce(ctx, d, group, host, relay, TLSNone)
	}
	if err == nil {
		a.counters.connsOpened.Add(1)
		a.log.Debug("connected", slog.String("host", host), slog.String("relay", relay), slog.Bool("tls", c.tls),
			slog.Bool("pipelining", c.has("PIPELINING")))
	}
	return c, err
}

// tlsRetryAfter is how long a relay whose TLS failed is sent plain text.
const tlsRetryAfter = time.Hour

// brokenTLS remembers relays whose STARTTLS failed, bounded in size.
type brokenTLS struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (b *brokenTLS) recent(relay string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.m[relay]
	return ok && time.Since(t) < tlsRetryAfter
}

func (b *brokenTLS) add(relay string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil || len(b.m) >= 10_000 {
		b.m = map[string]time.Time{} // crude bound: forgetting costs one more failed handshake
	}
	b.m[relay] = time.Now()
}

// tlsError marks a STARTTLS handshake failure.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// errNoAnswer marks a connect or greeting that timed out: the host is
// silent (a black hole, a firewall dropping packets), not refusing.
var errNoAnswer = errors.New("no answer")

// dialOnce connects within the destination's adaptive connect timeout,
// from the source pool of queue group if it has one, and says hello. A
// connect or greeting that times out is errNoAnswer.
// A server that answers and then refuses (a 421 or 554 greeting) is told
// QUIT and its close awaited before the slot is given back: it still
// counts the session until it closes it.
func (a *Agent) dialOnce(ctx context.Context, d *destination, group, host, relay string, mode TLSMode) (*conn, error) {
	timeout := a.pool.connectTimeout(d)
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, timeout)
	nc, helo, err := a.dialFrom(dctx, group, d, relay)
	cancel()
	if errors.Is(err, errBusy) {
		return nil, &Error{Enhanced: "4.4.5", Line: err.Error(), Err: err} // every source address at its limit
	}
	if err != nil {
		var ne net.Error
		if ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() {
			return nil, localError(false, "4.4.1", "connect", relay, fmt.Errorf("%w: %w", errNoAnswer, err),
				"connect to %s (%s): no answer within %v", host, relay, timeout)
		}
		return nil, localError(false, "4.4.1", "connect", relay, err, "connect to %s (%s): %v", host, relay, err)
	}
	a.pool.connected(d, time.Since(start))
	// Deadlines bound each read; closing the socket is what interrupts a
	// blocked read when the caller gives up.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	c := &conn{nc: nc, raw: nc, tp: textproto.NewConn(nc), host: host, relay: relay, cfg: &a.cfg, created: time.Now(), dest: d,
		src: a.sources.poolName(group), helo: helo}
	if err := c.hello(ctx, mode, a); err != nil {
		var de *Error
		if errors.As(err, &de) && de.Code != 0 && ctx.Err() == nil {
			c.close(quitWait(&a.cfg))
		} else {
			nc.Close()
		}
		if c.greeted {
			a.pool.ungreet(d)
		} else {
			a.pool.greetFailed(d)
		}
		return nil, c.ctxErr(ctx, err)
	}
	return c, nil
}

// hello does the greeting, EHLO (HELO if EHLO is refused) and STARTTLS.
func (c *conn) hello(ctx context.Context, mode TLSMode, a *Agent) error {
	// RFC 5321 §4.5.3.2.1: the greeting gets the command timeout too. A
	// tarpit is waited out: it is deliverable, and waiting costs one
	// goroutine and one of its own group's slots.
	start := time.Now()
	code, msg, err := c.readReply("greeting", c.cfg.CommandTimeout)
	c.greetTook = time.Since(start)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
			return localError(false, "4.4.2", "greeting", c.relay, fmt.Errorf("%w: %w", errNoAnswer, err),
				"no greeting from %s within %v", c.relay, c.cfg.CommandTimeout)
		}
		return err
	}
	if code != 220 {
		return replyError("greeting", code, msg, c.relay)
	}
	a.pool.greet(c.dest, c.greetTook)
	c.greeted = true
	if err := c.ehlo(); err != nil {
		return err
	}
	if _, ok := c.ext["STARTTLS"]; ok && mode != TLSNone {
		if err := c.startTLS(ctx, mode, a); err != nil {
			return err
		}
	}
	if mode == TLSRequired && !c.tls {
		return localError(false, "4.7.10", "STARTTLS", c.relay, nil, "TLS is required for %s but %s does not offer STARTTLS", c.host, c.relay)
	}
	return nil
}

// heloName is the name c gives in EHLO: its source address's.
func (c *conn) heloName() string {
	if c.helo != "" {
		return c.helo
	}
	return c.cfg.HELO
}

func (c *conn) ehlo() error {
	code, msg, err := c.cmd("EHLO", "EHLO %s", c.heloName())
	if err != nil {
		return err
	}
	c.ext = map[string]string{}
	if code == 250 {
		// RFC 5321 §4.1.1.1: the first line is the greeting, the rest are
		// keywords with optional parameters.
		lines := strings.Split(msg, "\n")
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
			c.ext[strings.ToUpper(k)] = v
		}
		return nil
	}
	if code/100 != 5 {
		return replyError("EHLO", code, msg, c.relay)
	}
	// RFC 5321 §3.2: a server that does not know EHLO gets HELO and no
	// extensions.
	code, msg, err = c.cmd("HELO", "HELO %s", c.heloName())
	if err != nil {
		return err
	}
	if code != 250 {
		return replyError("HELO", code, msg, c.relay)
	}
	return nil
}

// startTLS upgrades the connection (RFC 3207) and repeats EHLO, whose
// answer before TLS must be forgotten (§4.2). Sessions are resumed from
// the agent's shared session cache on hosts seen before.
func (c *conn) startTLS(ctx context.Context, mode TLSMode, a *Agent) error {
	code, msg, err := c.cmd("STARTTLS", "STARTTLS")
	if err != nil {
		return err
	}
	if code != 220 {
		if mode == TLSRequired {
			return replyError("STARTTLS", code, msg, c.relay)
		}
		return nil // opportunistic: carry on in plain text
	}
	cfg := &tls.Config{
		ServerName:         c.host,
		ClientSessionCache: a.tlsSessions,
		RootCAs:            c.cfg.TLSRootCAs,
		MinVersion:         tls.VersionTLS12,
		// Opportunistic TLS protects against passive eavesdropping only;
		// an unverifiable certificate must not stop delivery (RFC 7435).
		InsecureSkipVerify:   mode != TLSRequired,
		GetClientCertificate: c.cfg.clientCertFor(c.relay),
	}
	tc := tls.Client(c.nc, cfg)
	_ = tc.SetDeadline(time.Now().Add(c.cfg.CommandTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		return localError(false, "4.7.5", "STARTTLS", c.relay, &tlsError{err}, "TLS handshake with %s: %v", c.relay, err)
	}
	c.nc, c.tp, c.tls = tc, textproto.NewConn(tc), true // c.raw stays the TCP connection
	err = c.ehlo()
	var de *Error
	if errors.As(err, &de) && de.Code == 0 {
		// TLS 1.3 reports a server's refusal (say, of a missing client
		// certificate) only at the first read after the handshake.
		return localError(false, "4.7.5", "STARTTLS", c.relay, &tlsError{err}, "TLS session with %s failed: %v", c.relay, err)
	}
	return err
}

// cmd sends one command and reads its reply.
func (c *conn) cmd(name, format string, args ...any) (int, string, error) {
	if err := c.write(name, format, args...); err != nil {
		return 0, "", err
	}
	if err := c.flush(name); err != nil {
		return 0, "", err
	}
	return c.readReply(name, c.cfg.CommandTimeout)
}

// write buffers one command line; flush sends what is buffered.
func (c *conn) write(name, format string, args ...any) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.CommandTimeout))
	if _, err := fmt.Fprintf(c.tp.W, format+"\r\n", args...); err != nil {
		c.broken = true
		return c.ioError(name, err)
	}
	return nil
}

func (c *conn) flush(name string) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.CommandTimeout))
	if err := c.tp.W.Flush(); err != nil {
		c.broken = true
		return c.ioError(name, err)
	}
	return nil
}

// readReply reads one (possibly multi-line) reply. A 421 means the server
// is closing the connection (RFC 5321 §3.8), so it is not reused.
func (c *conn) readReply(name string, timeout time.Duration) (int, string, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	code, msg, err := readResponse(c.tp.R)
	if err != nil {
		c.broken = true
		var pe textproto.ProtocolError
		if errors.As(err, &pe) {
			return 0, "", localError(false, "4.5.0", name, c.relay, err, "bad reply from %s to %s: %v", c.relay, name, err)
		}
		return 0, "", c.ioError(name, err)
	}
	if code < 200 || code > 599 {
		c.broken = true
		return 0, "", localError(false, "4.5.0", name, c.relay, nil, "reply code %d from %s to %s out of range", code, c.relay, name)
	}
	if code == 421 {
		c.broken = true
	}
	return code, msg, nil
}

func (c *conn) ioError(name string, err error) *Error {
	return localError(false, "4.4.2", name, c.relay, err, "lost connection with %s during %s: %v", c.relay, name, err)
}

// ctxErr reports a cancelled context as such rather than as the I/O error
// closing the socket caused.
func (c *conn) ctxErr(ctx context.Context, err error) error {
	var de *Error
	if ctx.Err() != nil && (!errors.As(err, &de) || de.Code == 0) {
		return localError(false, "4.4.7", "", c.relay, ctx.Err(), "delivery interrupted with %s: %v", c.relay, ctx.Err())
	}
	return err
}

// maxSize is the server's SIZE limit (RFC 1870), 0 if none.
func (c *conn) maxSize() int64 {
	v, ok := c.ext["SIZE"]
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

func (c *conn) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// close says QUIT (unless the dialogue is broken) and returns once the
// server has closed its side, or after wait. The reply itself is not
// needed (Postfix's smtp_skip_quit_response), but the close is: a
// receiver counts the session against its limit on connections from one
// address until it closes it, and the slot must not take a new
// connection before that. Without a QUIT the write side is shut so the
// server sees the end.
func (c *conn) close(wait time.Duration) {
	if !c.broken {
		_ = c.write("QUIT", "QUIT")
		_ = c.flush("QUIT")
	} else if tc, ok := c.raw.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	if wait > 0 {
		_ = c.raw.SetReadDeadline(time.Now().Add(wait))
		_, _ = io.Copy(io.Discard, io.LimitReader(c.raw, maxDrain))
	}
	c.nc.Close()
}

// maxDrain bounds what close reads while waiting for the server's close.
const maxDrain = 64 << 10

// idleTimeout is how long c may rest in the cache: ConnIdleTimeout, or as
// long as its greeting took when that is longer (a tarpit's connection is
// worth keeping: another would cost the same wait), within ConnMaxAge.
func (c *conn) idleTimeout(cfg *Config) time.Duration {
	return max(cfg.ConnIdleTimeout, min(c.greetTook, cfg.ConnMaxAge))
}

// Bounds on one reply, so that a server cannot make the client hold more
// than maxReplyLines*maxReplyLine bytes (400 KiB) for it. RFC 5321
// §4.5.3.1.5 allows 512 octets per reply line and sets no limit on the
// lines of a reply; real servers stay far below both, so the slack is
// generous. A reply over either bound is a protocol error: the
// connection is closed and the delivery deferred (4.5.0) like any other
// broken dialogue, and the next MX is tried.
const (
	maxReplyLine  = 4096 // octets per reply line, CRLF not counted
	maxReplyLines = 100  // lines per reply
)

// readResponse reads one reply as textproto's ReadResponse does (the
// text of each line after the code, joined with "\n"), within the bounds
// above. As there, a continuation line with another code or no code is
// kept as text; a first line without a code is an error.
func readResponse(r *bufio.Reader) (code int, msg string, err error) {
	line, err := readReplyLine(r)
	if err != nil {
		return 0, "", err
	}
	code, more, text, ok := parseReplyLine(line)
	if !ok {
		return 0, "", textproto.ProtocolError("malformed reply line: " + printable(line))
	}
	if !more {
		return code, text, nil
	}
	var b strings.Builder
	b.WriteString(text)
	for n := 1; more; n++ {
		if n == maxReplyLines {
			return 0, "", textproto.ProtocolError(fmt.Sprintf("reply longer than %d lines", maxReplyLines))
		}
		if line, err = readReplyLine(r); err != nil {
			return 0, "", err
		}
		code2, more2, text2, ok := parseReplyLine(line)
		if !ok || code2 != code {
			text2, more2 = strings.TrimRight(string(line), "\r\n"), true
		}
		b.WriteByte('\n')
		b.WriteString(text2)
		more = more2
	}
	return code, b.String(), nil
}

// readReplyLine reads one line without its line ending, refusing one
// longer than maxReplyLine before it has read more than that.
func readReplyLine(r *bufio.Reader) ([]byte, error) {
	var long []byte // only for a line longer than the reader's buffer
	for {
		chunk, err := r.ReadSlice('\n')
		if len(long)+len(chunk) > maxReplyLine+2 {
			return nil, textproto.ProtocolError(fmt.Sprintf("reply line longer than %d octets", maxReplyLine))
		}
		switch {
		case err == nil && long == nil:
			return trimEOL(chunk), nil
		case err == nil:
			return trimEOL(append(long, chunk...)), nil
		case errors.Is(err, bufio.ErrBufferFull):
			long = append(long, chunk...)
		default:
			if err == io.EOF && len(long)+len(chunk) > 0 {
				err = io.ErrUnexpectedEOF // cut inside a line
			}
			return nil, err
		}
	}
}

func trimEOL(b []byte) []byte {
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

// parseReplyLine splits "250-text", "250 text" or "250" (RFC 5321
// §4.2: Reply-code [ SP textstring ] on the last line).
func parseReplyLine(line []byte) (code int, more bool, text string, ok bool) {
	if len(line) < 3 || len(line) > 3 && line[3] != ' ' && line[3] != '-' {
		return 0, false, "", false
	}
	for _, d := range line[:3] {
		if d < '0' || d > '9' {
			return 0, false, "", false
		}
		code = code*10 + int(d-'0')
	}
	if len(line) == 3 {
		return code, false, "", true
	}
	return code, line[3] == '-', string(line[4:]), true
}

// printable is a short, safe rendering of a line from the network for
// an error message.
func printable(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return strconv.QuoteToASCII(string(b))
}
