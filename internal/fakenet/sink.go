package fakenet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// SinkOptions configures a Sink. The zero value is a sink on 127.0.0.1 with
// an OS-chosen port that accepts everything and keeps message bodies.
type SinkOptions struct {
	// Addr to listen on, such as "127.0.0.7:0"; empty means "127.0.0.1:0".
	Addr string
	// Hostname in the greeting and EHLO reply; default "sink.fakenet.test".
	Hostname string
	// MaxMessageBytes is advertised with SIZE and enforced; 0 advertises
	// SIZE without a limit.
	MaxMessageBytes int64
	// MaxConns, when positive, caps concurrent connections: one more is
	// greeted with 421 and closed, as a busy MTA would.
	MaxConns int
	// ConnHook, if set, is asked about every accepted connection; a non-nil
	// reply is sent instead of the 220 greeting and the connection closed.
	ConnHook func(remoteAddr string) *smtp.SMTPError
	// RcptHook, if set, chooses the reply to each RCPT: nil accepts, an
	// *smtp.SMTPError is sent as is.
	RcptHook func(from, to string) error
	// DataHook, if set, runs after the message is read and before it is
	// recorded; a non-nil error (typically *smtp.SMTPError) is the DATA
	// reply and the message is not recorded. It may sleep to model a slow
	// receiver.
	DataHook func(d Delivery) error
	// DiscardBodies keeps only each message's key, not its bytes, so a
	// benchmark can deliver 100,000 copies in little memory.
	DiscardBodies bool
	// Timeout bounds each read and write on a server connection so a
	// vanished client cannot hold a test open; default 1 minute.
	Timeout time.Duration
	// RTT, when positive, emulates a WAN round trip on every connection
	// (see rttConn): one RTT before the greeting and one on the first read
	// after each reply, so a pipelined batch pays once and a lock-step
	// dialogue pays per command, as on a real link.
	RTT time.Duration
	// Drop, if set, is asked after each message is read; true closes the
	// connection with no reply, as a failed link would, and the message
	// is not recorded (the client must retry it).
	Drop func(d Delivery) bool
	// OnRecord, if set, is called after each delivery is recorded, with
	// the time it was, outside the sink's lock.
	OnRecord func(d Delivery, at time.Time)

	// The behaviours of real receivers, for the load tool's emulated
	// Internet (see policy.go for the replies).

	// GreetDelay holds the greeting this much longer than RTT, as a
	// tarpit does; ReplyDelay adds to every later exchange, paid like
	// RTT (once per pipelined batch), as a slow or tarpitting server.
	GreetDelay, ReplyDelay time.Duration
	// MaxConnsPerIP, when positive, caps concurrent sessions from one
	// client address: one more gets 421 4.7.0 at the greeting.
	MaxConnsPerIP int
	// MaxMsgsPerConn, when positive, answers the MAIL FROM after that
	// many on one connection 421 4.7.0 and closes the connection, as the
	// big providers do.
	MaxMsgsPerConn int
	// MaxRcpts, when positive, answers RCPTs beyond that many accepted in
	// one transaction 452 4.5.3 (RFC 5321 §4.5.3.1.10).
	MaxRcpts int
	// Greylist, when positive, answers the first RCPT of each (sender,
	// recipient) pair 451 4.7.1, and every retry of it until Greylist has
	// passed since that first attempt; later ones go on to RcptHook. It
	// applies only to RCPTs RcptHook accepts, as a policy service runs
	// after the recipient checks.
	Greylist time.Duration
	// SMTPUTF8 advertises SMTPUTF8 (RFC 6531) and takes UTF-8 addresses.
	SMTPUTF8 bool
}

// Delivery is one completed transaction (DATA answered 250).
type Delivery struct {
	From       string
	Recipients []string
	Data       []byte // nil when SinkOptions.DiscardBodies is set
	Key        string // MessageKey of the data
	Size       int64  // bytes received
	SizeParam  int64  // MAIL FROM SIZE= value, 0 if absent
	BodyParam  string // MAIL FROM BODY= value, "" if absent
	Helo       string // EHLO/HELO name the client gave
	RemoteAddr string
}

// SinkStats is a snapshot of a Sink's counters.
type SinkStats struct {
	Connections         int // TCP connections accepted, including rejected ones
	Rejected            int // connections refused at greeting (MaxConns or ConnHook)
	MaxConcurrentConns  int // highest number of connections open at once
	Transactions        int // completed DATA
	RcptAccepted        int // RCPT commands answered 250
	RcptRejected        int // RCPT commands answered with an error
	RecipientsDelivered int // sum of recipients over completed transactions
	Bytes               int64
	Duplicates          int // deliveries of a (message key, recipient) pair already seen
	Dropped             int // transactions cut off by SinkOptions.Drop
	// MaxOpenConns is the highest number of TCP connections open at once,
	// counting those being turned away at the greeting: more than a cap
	// means the client tried to exceed it.
	MaxOpenConns int
	Greylisted   int // RCPTs answered 451 by SinkOptions.Greylist
	Throttled    int // MAIL FROMs answered 421 by SinkOptions.MaxMsgsPerConn
	TooManyRcpts int // RCPTs answered 452 by SinkOptions.MaxRcpts
}

type pairKey struct{ key, rcpt string }

type greyKey struct{ from, rcpt string }

// Sink is an SMTP server that records what it receives. All methods are
// safe for concurrent use.
type Sink struct {
	opts     SinkOptions
	srv      *smtp.Server
	ln       net.Listener
	done     chan struct{} // closed when Serve returns
	quit     chan struct{} // closed by Close: ends emulated delays at once
	quitOnce sync.Once
	wg       sync.WaitGroup

	mu         sync.Mutex
	changed    chan struct{}  // closed and replaced on every delivery
	active     int            // sessions
	open       int            // TCP connections, including those being refused
	perIP      map[string]int // sessions by client address
	grey       map[greyKey]time.Time
	stats      SinkStats
	deliveries []Delivery
	perRcpt    map[string]int
	pairs      map[pairKey]int
}

// NewSink starts a sink and returns once it is accepting connections.
func NewSink(opts SinkOptions) (*Sink, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Hostname == "" {
		opts.Hostname = "sink.fakenet.test"
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("sink listen %s: %w", opts.Addr, err)
	}
	s := &Sink{
		opts:    opts,
		ln:      ln,
		done:    make(chan struct{}),
		quit:    make(chan struct{}),
		changed: make(chan struct{}),
		perIP:   make(map[string]int),
		grey:    make(map[greyKey]time.Time),
		perRcpt: make(map[string]int),
		pairs:   make(map[pairKey]int),
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = opts.Hostname
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.EnableSMTPUTF8 = opts.SMTPUTF8
	srv.ReadTimeout = opts.Timeout
	srv.WriteTimeout = opts.Timeout
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv = srv
	go func() {
		defer close(s.done)
		_ = srv.Serve(&sinkListener{Listener: ln, s: s})
	}()
	return s, nil
}

// Addr is the listening address as host:port.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Host is the listening IP address.
func (s *Sink) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the listening port.
func (s *Sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Close stops the sink and drops open connections.
func (s *Sink) Close() error {
	s.quitOnce.Do(func() { close(s.quit) })
	_ = s.srv.Close()
	// Serve may not have registered the listener yet; close it ourselves.
	_ = s.ln.Close()
	<-s.done
	s.wg.Wait()
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Connections is the number of TCP connections accepted.
func (s *Sink) Connections() int { return s.Stats().Connections }

// MaxConcurrentConns is the highest number of connections open at once.
func (s *Sink) MaxConcurrentConns() int { return s.Stats().MaxConcurrentConns }

// Transactions is the number of completed DATA commands.
func (s *Sink) Transactions() int { return s.Stats().Transactions }

// Duplicates counts deliveries of a (message, recipient) pair beyond the first.
func (s *Sink) Duplicates() int { return s.Stats().Duplicates }

// RecipientsDelivered is the number of recipient deliveries over all
// completed transactions.
func (s *Sink) RecipientsDelivered() int { return s.Stats().RecipientsDelivered }

// RecipientCount is how many completed transactions included rcpt.
func (s *Sink) RecipientCount(rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perRcpt[rcpt]
}

// PairCount is how many times the message with the given key reached rcpt.
func (s *Sink) PairCount(key, rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pairs[pairKey{key, rcpt}]
}

// Deliveries returns a copy of every completed transaction in arrival order.
func (s *Sink) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, len(s.deliveries))
	copy(out, s.deliveries)
	return out
}

// WaitRecipients blocks until at least n recipient deliveries have been
// recorded or ctx ends.
func (s *Sink) WaitRecipients(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		got, ch := s.stats.RecipientsDelivered, s.changed
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("sink %s: %d of %d recipients delivered: %w", s.Addr(), got, n, ctx.Err())
		}
	}
}

func (s *Sink) record(d Delivery) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := time.Now()
	s.stats.Transactions++
	s.stats.Bytes += d.Size
	s.stats.RecipientsDelivered += len(d.Recipients)
	for _, r := range d.Recipients {
		s.perRcpt[r]++
		k := pairKey{d.Key, r}
		s.pairs[k]++
		if s.pairs[k] > 1 {
			s.stats.Duplicates++
		}
	}
	s.deliveries = append(s.deliveries, d)
	close(s.changed)
	s.changed = make(chan struct{})
	return at
}

// MessageKey identifies a message for duplicate counting: its Message-ID
// header if it has one, else "sha256:" and the hex digest of the bytes.
func MessageKey(data []byte) string {
	if id := headerValue(data, "message-id"); id != "" {
		return id
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// headerValue returns the first value of the named header (lowercase name),
// unfolded and trimmed, looking only at the header section.
func headerValue(data []byte, name string) string {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			return "" // end of header
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || !bytes.EqualFold(bytes.TrimSpace(line[:colon]), []byte(name)) {
			continue
		}
		val := string(bytes.TrimSpace(line[colon+1:]))
		// Unfold continuation lines.
		for len(data) > 0 && (data[0] == ' ' || data[0] == '\t') {
			next := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				next, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			val += " " + string(bytes.TrimSpace(next))
		}
		return strings.TrimSpace(val)
	}
	return ""
}

type sinkSession struct {
	s      *Sink
	conn   net.Conn
	tc     *trackedConn // nil if go-smtp ever hands over another conn
	remote string
	helo   string
	from   string
	opts   smtp.MailOptions
	rcpts  []string
}

func (s *Sink) newSession(c *smtp.Conn) (smtp.Session, error) {
	tc, _ := c.Conn().(*trackedConn)
	return &sinkSession{s: s, conn: c.Conn(), tc: tc, remote: c.Conn().RemoteAddr().String(), helo: c.Hostname()}, nil
}

func (ss *sinkSession) Reset() {
	ss.from, ss.opts, ss.rcpts = "", smtp.MailOptions{}, nil
}

func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	if err := ss.s.mailReply(ss.tc); err != nil {
		return err
	}
	ss.from = from
	if opts != nil {
		ss.opts = *opts
	}
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	err := ss.s.rcptReply(ss.from, to, len(ss.rcpts))
	ss.s.mu.Lock()
	if err != nil {
		ss.s.stats.RcptRejected++
	} else {
		ss.s.stats.RcptAccepted++
	}
	ss.s.mu.Unlock()
	if err != nil {
		return err
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	d := Delivery{
		From:       ss.from,
		Recipients: append([]string(nil), ss.rcpts...),
		Data:       data,
		Key:        MessageKey(data),
		Size:       int64(len(data)),
		SizeParam:  ss.opts.Size,
		BodyParam:  string(ss.opts.Body),
		Helo:       ss.helo,
		RemoteAddr: ss.remote,
	}
	if drop := ss.s.opts.Drop; drop != nil && drop(d) {
		ss.s.mu.Lock()
		ss.s.stats.Dropped++
		ss.s.mu.Unlock()
		ss.conn.Close()
		return errors.New("connection dropped")
	}
	if h := ss.s.opts.DataHook; h != nil {
		if err := h(d); err != nil {
			return err
		}
	}
	if ss.s.opts.DiscardBodies {
		d.Data = nil
	}
	at := ss.s.record(d)
	if f := ss.s.opts.OnRecord; f != nil {
		f(d, at)
	}
	return nil
}
