// Package ingress is the first stage of the pipeline: the SMTP server
// side. It accepts a post only for addresses the expander recognises,
// and relays mail for other domains only for its relay peers (relay.go);
// it hands the message to the expander and then to the queue, and
// answers 250 with the queue ID only once the queue says the message is
// durable. Under load it queues only, slows down or refuses at connect
// (load.go), so it never accepts faster than fanmail delivers; every
// session's resources are bounded (limits.go, guard.go), under STARTTLS
// too, which the connection guard runs itself (inbound.go, starttls.go).
package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/address"
	"fanmail/expander"
	"fanmail/queuegroups"
)

// Expander resolves recipients and expands posts; *expander.Expander is one.
type Expander interface {
	Lookup(ctx context.Context, rcpt string) (string, error)
	Serves(ctx context.Context, domain string) (bool, error)
	Expand(ctx context.Context, p expander.Post) (*expander.Expansion, error)
	Withdraw(ctx context.Context, stored []int64)
}

// Queue stores messages durably; *queuegroups.Queue is one. A post is
// received into a Body from NewBody, which keeps a bounded part in
// memory and the rest in a temporary file of the spool.
type Queue interface {
	NewBody() *queuegroups.Body
	Enqueue(ctx context.Context, m *queuegroups.Message) error
}

// Config is the SMTP listener's settings. A zero limit or timeout takes
// DefaultConfig's.
type Config struct {
	Listen         string
	Hostname       string
	MaxMessageSize int64
	// MaxRecipients caps the RCPT commands of one transaction, rejected
	// ones included: past it each gets 452 4.5.3.
	MaxRecipients int
	// RecipientOvershoot is how many 452 4.5.3 a transaction may draw
	// before each counts as an error (Postfix
	// smtpd_recipient_overshoot_limit), so a client that pipelines past
	// the limit keeps its session and sends the rest later.
	RecipientOvershoot int
	// MaxErrors is the rejected commands a session may make without
	// delivering a post; at it the client gets 421 4.7.0 and is
	// disconnected (Postfix smtpd_hard_error_limit).
	MaxErrors int
	// MaxJunkCommands is the commands that move no mail (NOOP, RSET,
	// VRFY, HELO, EHLO, ...) a session may send before each counts as an
	// error (Postfix smtpd_junk_command_limit).
	MaxJunkCommands int
	ReadTimeout     time.Duration // idle time for one command (RFC 5321 §4.5.3.2)
	WriteTimeout    time.Duration
	SessionTimeout  time.Duration // a session's whole lifetime
	Load            Load          // load control; the zero value turns it off
	Logger          *slog.Logger
	// TLS, when set, offers STARTTLS (RFC 3207) with it (see ServerTLS);
	// RequireTLS then refuses MAIL before STARTTLS with 530 5.7.0.
	TLS        *tls.Config
	RequireTLS bool
	// Peers may relay mail to other domains through this server
	// (relay.go); nobody else may.
	Peers Peers
}

// DefaultConfig is the listener's configuration when nothing is set:
// every default in one place. New fills the zero limits and timeouts of
// its Config from here; package config shows these values as the
// defaults of listen, max_message_size and [load].
func DefaultConfig() Config {
	return Config{
		Listen:         "127.0.0.1:2525",
		MaxMessageSize: 25 << 20,
		// Postfix's defaults for the per-session counts.
		MaxRecipients:      1000,
		RecipientOvershoot: 1000,
		MaxErrors:          20,
		MaxJunkCommands:    100,
		ReadTimeout:        5 * time.Minute,
		WriteTimeout:       5 * time.Minute,
		// MTAs hold a cached connection for minutes (Postfix 300s,
		// sendmail 5m), never this long.
		SessionTimeout: 30 * time.Minute,
		Load: Load{
			// sendmail's defaults: queue only at 8 per CPU, refuse at 12.
			QueueLA:  float64(8 * runtime.NumCPU()),
			RefuseLA: float64(12 * runtime.NumCPU()),
			Delay:    time.Second,
			Interval: 250 * time.Millisecond,
			// A session costs tens of KB (more while a post is read);
			// Postfix runs 100 smtpd processes, 50 per client.
			MaxSessions:          500,
			MaxSessionsPerClient: 20,
			// Postfix ships this off and operators set 30 to 60 a
			// minute. Posters and relaying MTAs reuse their sessions,
			// and a 421 only delays a retrying MTA; 2 a second
			// sustained passes a busy MTA that does not, and still cuts
			// a churn of hundreds a second to nothing. The host itself
			// (fanmail-bench, local submitters) is never counted.
			MaxConnectionRatePerClient: 120,
			ConnectionRateWindow:       time.Minute,
			ConnectionRateExempt:       []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
			// Postfix wants queue_minfree of at least 1.5 messages of
			// the largest size; this leaves room for four.
			MinFreeSpace: 100 << 20,
		},
	}
}

// Server is fanmail's SMTP listener.
type Server struct {
	cfg   Config
	log   *slog.Logger
	exp   Expander
	queue Queue
	ids   *queuegroups.IDSource
	smtp  *smtp.Server
	ln    *loadListener
	load  *loadMonitor

	counters counters // observe.go
	refusals *rateLog // refused commands and connections

	// inData counts DATA commands being processed, so shutdown can wait
	// until every message that may get a 250 is on disk.
	inData sync.WaitGroup
}

// New prepares a server; Listen binds it.
func New(cfg Config, exp Expander, q Queue, ids *queuegroups.IDSource) *Server {
	def := DefaultConfig()
	for _, f := range []struct{ v, d *int }{
		{&cfg.MaxRecipients, &def.MaxRecipients},
		{&cfg.RecipientOvershoot, &def.RecipientOvershoot},
		{&cfg.MaxErrors, &def.MaxErrors},
		{&cfg.MaxJunkCommands, &def.MaxJunkCommands},
	} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	for _, f := range []struct{ v, d *time.Duration }{
		{&cfg.ReadTimeout, &def.ReadTimeout},
		{&cfg.WriteTimeout, &def.WriteTimeout},
		{&cfg.SessionTimeout, &def.SessionTimeout},
	} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, exp: exp, queue: q, ids: ids,
		load: newLoadMonitor(cfg.Load, cfg.Logger), refusals: &rateLog{out: cfg.Logger, perSecond: 20}}
	srv := smtp.NewServer(s)
	srv.Addr = cfg.Listen
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageSize
	srv.MaxRecipients = cfg.MaxRecipients
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.ErrorLog = slogAdapter{cfg.Logger}
	// No srv.TLSConfig: the connection guard runs STARTTLS (starttls.go).
	s.cfg.TLS = peerTLS(cfg.TLS, cfg.Peers)
	// RFC 6531: UTF-8 addresses and RFC 6532 headers are taken and passed
	// on; delivery asks the next server for SMTPUTF8 where they need it.
	srv.EnableSMTPUTF8 = true
	s.smtp = srv
	return s
}

// Listen binds the listening socket, so the caller knows the port is
// taken before it reports the server as started.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	s.ln = &loadListener{Listener: ln, s: s, clients: map[string]*clientSessions{},
		rate: newRateLimiter(s.cfg.Load, s.cfg.Peers.Networks, s.log)}
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts sessions until Shutdown.
func (s *Server) Serve() error {
	err := s.smtp.Serve(s.ln)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, lets sessions finish until ctx ends, then
// closes the rest; it returns once no DATA is being processed, so every
// 250 sent is backed by the journal.
func (s *Server) Shutdown(ctx context.Context) {
	if err := s.smtp.Shutdown(ctx); err != nil {
		s.smtp.Close()
	}
	s.inData.Wait()
	if s.ln != nil {
		s.ln.rejects.Wait()
	}
}

// NewSession implements smtp.Backend: the session that takes posts,
// inside the one that keeps it to its limits.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	remote := ""
	if addr, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		remote = addr.IP.String()
	}
	return newLimitSession(&session{srv: s, conn: c, remote: remote})
}

type session struct {
	srv    *Server
	conn   *smtp.Conn
	guard  *guardConn // the connection under go-smtp (limits.go)
	remote string
	from   string
	utf8   bool // MAIL FROM carried SMTPUTF8
	lists  []string
	relay  []string // recipients elsewhere, for a relay peer
	seen   map[string]bool
}

func (ss *session) Reset() {
	ss.from = ""
	ss.utf8 = false
	ss.lists = nil
	ss.relay = nil
	ss.seen = nil
}

func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.srv.load.pace()
	if ss.srv.cfg.RequireTLS && !ss.guard.tlsOn() {
		ss.rejected("MAIL", "tls_required", "from", from)
		return errNeedTLS
	}
	if from != "" {
		if _, err := address.Parse(from); err != nil {
			ss.rejected("MAIL", "bad_sender", "from", from, "err", err)
			return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7},
				Message: fmt.Sprintf("Bad sender address syntax: %v", err)}
		}
	}
	ss.from = from
	ss.utf8 = opts != nil && opts.UTF8
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.srv.load.pace()
	rcpt, domain := "postmaster", "" // RFC 5321 §4.5.1: the bare <postmaster> (inbound.go)
	if !strings.EqualFold(to, barePostmaster) {
		mbox, err := address.Parse(to)
		if err != nil {
			ss.rejected("RCPT", "bad_recipient", "from", ss.from, "rcpt", to, "err", err)
			return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
				Message: fmt.Sprintf("Bad recipient address syntax: %v", err)}
		}
		rcpt, domain = mbox.String(), mbox.Domain
	}
	to = rcpt
	list, err := ss.srv.exp.Lookup(context.Background(), rcpt)
	var cmdErr *expander.CommandError
	if errors.As(err, &cmdErr) {
		// A command address (a moderator's, a confirmation) with a
		// forged, expired or used token.
		ss.rejected("RCPT", "command_token", "from", ss.from, "rcpt", to, "err", err)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: cmdErr.Reason}
	}
	if errors.Is(err, expander.ErrUnknownRecipient) {
		return ss.unknownRecipient(context.Background(), to, rcpt, domain) // relay.go
	}
	if err != nil {
		ss.srv.log.Error("recipient lookup failed", "rcpt", to, "err", err)
		ss.srv.countRejected("RCPT", "temp_failure")
		return errTempStore
	}
	if !ss.seen[list] {
		if ss.seen == nil {
			ss.seen = map[string]bool{}
		}
		ss.seen[list] = true
		ss.lists = append(ss.lists, list)
	}
	return nil
}

func (ss *session) Data(r io.Reader) error {
	s := ss.srv
	s.inData.Add(1)
	defer s.inData.Done()

	// The post goes into a spool body (a bounded part in memory, the rest
	// in an unlinked file), which Enqueue copies into the journal.
	body := s.queue.NewBody()
	defer body.Close()
	if _, err := body.ReadFrom(r); err != nil {
		var serr *smtp.SMTPError
		switch {
		case body.Err() != nil:
			s.log.Error("cannot spool message body", "from", ss.from, "err", body.Err())
			return errTempStore
		case errors.As(err, &serr):
			ss.rejected("DATA", "too_big", "from", ss.from, "lists", ss.lists)
			return serr // 552 5.3.4 from the size limit
		case errors.Is(err, smtp.ErrTooLongLine):
			ss.rejected("DATA", "line_too_long", "from", ss.from, "lists", ss.lists)
			// go-smtp closes the session after this reply: the rest of
			// the line cannot be told apart from commands.
			return errLineTooLong
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Error reading message"}
	}
	s.load.pace()
	ctx := context.Background()
	id := s.ids.Next()
	post := expander.Post{ID: id, Received: time.Now(), Sender: ss.from, Helo: heloName(ss.conn.Hostname()),
		RemoteAddr: ss.remote, TLS: ss.tlsDescription(), UTF8: ss.utf8, Lists: ss.lists, Relay: ss.relay, Body: body}
	exp, err := s.exp.Expand(ctx, post)
	if reply := ss.policyReply(id, err); reply != nil {
		return reply
	}
	if errors.Is(err, expander.ErrLoop) {
		ss.rejected("DATA", "loop", "qid", id, "from", ss.from, "lists", ss.lists, "err", err)
		return errLoop
	}
	if errors.Is(err, expander.ErrHeaderTooLarge) {
		ss.rejected("DATA", "header_too_large", "qid", id, "from", ss.from, "lists", ss.lists, "size", body.Size())
		return errHeaderTooLarge
	}
	if errors.Is(err, expander.ErrNoTargets) {
		ss.rejected("DATA", "no_targets", "qid", id, "from", ss.from, "lists", ss.lists, "err", err)
		return errNoTargets
	}
	if err != nil {
		s.log.Error("expansion failed", "qid", id, "err", err)
		s.countRejected("DATA", "temp_failure")
		return errTempStore
	}
	msg := exp.Message
	msg.SMTPUTF8 = ss.utf8
	queueOnly := s.load.current()&stateQueue != 0
	if queueOnly {
		// Accept, but leave delivery to the next queue run while the
		// system catches up (sendmail QueueLA).
		msg.Mode = queuegroups.ModeQueue
	}
	// The list's members are read from the store as the queue writes
	// them; a list without members queues nothing and is still a 250,
	// as is a post every list held or discarded.
	if err := s.queue.Enqueue(ctx, msg); err != nil && !errors.Is(err, queuegroups.ErrNoRecipients) {
		s.log.Error("cannot queue message", "qid", id, "err", err)
		s.exp.Withdraw(ctx, exp.Stored)
		s.countRejected("DATA", "temp_failure")
		return errTempStore
	}
	rcpts := msg.Queued()
	s.counters.accepted.Add(1)
	s.log.Info("accepted", "qid", id, "client", ss.remote, "helo", post.Helo, "from", ss.from,
		"message_id", finishID(exp.MessageID), "lists", ss.lists, "size", body.Size(), "rcpts", rcpts, "queue_only", queueOnly,
		"policy", exp.Notes)
	if exp.Reply != "" {
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: exp.Reply}
	}
	// go-smtp turns an *SMTPError into the reply verbatim; this is how the
	// 250 carries the queue ID.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + id}
}

// policyReply is the reply to DATA for a post that a list refuses
// (550 5.7.1 with the list's reason, which says what to do), that no
// list's copy can be made of (554 5.6.0), or that carries a moderator's
// command refused since RCPT (550 5.7.1); nil for any other outcome.
func (ss *session) policyReply(id string, err error) *smtp.SMTPError {
	var pe *expander.PolicyError
	var ce *expander.CommandError
	switch {
	case errors.As(err, &pe):
		ss.rejected("DATA", "policy", "qid", id, "from", ss.from, "list", pe.List, "why", pe.Reason)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: pe.Reason}
	case errors.As(err, &ce):
		ss.rejected("DATA", "command_token", "qid", id, "from", ss.from, "err", err)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: ce.Reason}
	case errors.Is(err, expander.ErrBadHeader):
		ss.rejected("DATA", "bad_header", "qid", id, "from", ss.from, "err", err)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
			Message: "Message header does not parse (RFC 5322 §2.2: every line is a field NAME: value or its continuation)"}
	}
	return nil
}

// slogAdapter routes go-smtp's internal error log to slog.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Println(v ...any)               { a.log.Warn(fmt.Sprint(v...)) }
