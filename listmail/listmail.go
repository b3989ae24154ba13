package listmail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"fanmail/bounces"
	"fanmail/dkim"
	"fanmail/envelope"
	"fanmail/expander"
	"fanmail/listaddr"
	"fanmail/lists"
	"fanmail/queuegroups"
)

// Store is what listmail needs of the list store; *lists.Store is one.
type Store interface {
	FindList(ctx context.Context, list string) (lists.List, error)
	Settings(ctx context.Context, list string) (lists.Settings, error)
	IsMember(ctx context.Context, list, addr string) (bool, error)
	Moderators(ctx context.Context, list string) ([]string, error)
	OpenRequest(ctx context.Context, list, addr string, action lists.RequestAction, ttl time.Duration) (string, lists.Request, error)
	UseConfirmToken(ctx context.Context, list, token, by string, approveTTL time.Duration) (lists.Confirmation, error)
	AllowAnswer(ctx context.Context, addr string, now time.Time, perDay int) (bool, error)
	RecordBounces(ctx context.Context, list string, recs []lists.BounceRecord) ([]lists.BounceResult, error)
	UpdateBounce(ctx context.Context, list, addr string, fn lists.Scorer) (bounces.Decision, error)
	DisabledMembers(ctx context.Context) ([]lists.MemberBounces, error)
	ExpireRequests(ctx context.Context, now time.Time) ([]lists.Request, error)
	Welcomes(ctx context.Context) ([]lists.Request, error)
	ClaimWelcome(ctx context.Context, id int64) (bool, error)
	FinishWelcome(ctx context.Context, id int64, done bool) error
	SweepAnswers(ctx context.Context, now time.Time) error
}

// Expander is what listmail needs of the expander; *expander.Expander
// is one.
type Expander interface {
	IsListDomain(ctx context.Context, domain string) (bool, error)
	Internal(ctx context.Context, rcpt string) (listaddr.Address, bool, error)
	ForwardToOwner(ctx context.Context, p expander.Post, list, sender, qid string) (*queuegroups.Message, error)
}

// Queue takes the mail listmail sends; *queuegroups.Queue is one.
type Queue interface {
	Enqueue(ctx context.Context, m *queuegroups.Message) error
}

// Config is what a Service works with.
type Config struct {
	Store    Store
	Expander Expander
	// Queue is where answers and notices go. The queue is opened with
	// the Deliverer, so it may be set after New, before the queue
	// starts; see SetQueue.
	Queue    Queue
	IDs      *queuegroups.IDSource
	Keys     *dkim.Keyring // signs what it sends for the list's domain; nil: unsigned
	Hostname string        // names Message-IDs; a report from this MTA is fanmail's own DSN
	Logger   *slog.Logger
	// TickEvery is how often Run looks for warnings and removals due;
	// default a minute.
	TickEvery time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Service handles mail to a list's own addresses. See the package doc.
type Service struct {
	cfg Config
	log *slog.Logger

	// replies are the 5xx replies delivery got for lists' mail, on
	// their way to the store in batches while Run runs (recorder.go).
	replies   chan failedReply
	recording atomic.Bool
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TickEvery <= 0 {
		cfg.TickEvery = time.Minute
	}
	if cfg.IDs == nil {
		cfg.IDs = queuegroups.NewIDSource()
	}
	return &Service{cfg: cfg, log: cfg.Logger, replies: make(chan failedReply, recorderQueue)}
}

// SetQueue sets the queue answers go to, for a queue opened after New
// (with the Deliverer); call it before the queue starts.
func (s *Service) SetQueue(q Queue) { s.cfg.Queue = q }

// errNoQueue is a Service used before SetQueue.
var errNoQueue = errors.New("listmail: no queue")

// incoming is one message delivered to one of a list's addresses.
type incoming struct {
	qid    string
	sender string // envelope sender; "" the null sender
	rcpt   string // as addressed
	addr   listaddr.Address
	open   func() io.Reader
	size   int64
}

// handle delivers in to its list's address and says what became of it:
// delivered (handled: answered, recorded, forwarded or ignored with a
// log line), deferred (a store or queue failure: tried again) or failed
// (the list is gone).
func (s *Service) handle(ctx context.Context, in incoming) envelope.Result {
	var what string
	var err error
	switch in.addr.Role {
	case listaddr.Request, listaddr.Subscribe, listaddr.Unsubscribe:
		what, err = s.command(ctx, in)
	case listaddr.Confirm:
		what, err = s.confirm(ctx, in)
	case listaddr.Bounces:
		what, err = s.bounce(ctx, in, false)
	case listaddr.Owner:
		if in.sender == "" {
			what, err = s.bounce(ctx, in, true)
		} else {
			what, err = s.forward(ctx, in, expander.BounceAddress(in.addr.List))
		}
	default:
		err = fmt.Errorf("%w: %s takes moderators' commands over SMTP only", errPermanent, in.rcpt)
	}
	r := envelope.Result{Recipient: in.rcpt, Relay: "listmail"}
	switch {
	case err == nil:
		r.Status, r.Reply = envelope.Delivered, envelope.Reply{Code: 250, Enhanced: "2.0.0", Text: what}
	case errors.Is(err, errPermanent) || errors.Is(err, lists.ErrNoList):
		r.Status, r.Reply = envelope.Failed, envelope.Reply{Enhanced: "5.1.1", Text: err.Error()}
	default:
		r.Status, r.Reply = envelope.Deferred, envelope.Reply{Enhanced: "4.3.0", Text: err.Error()}
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "delivery", slog.String("qid", in.qid), slog.String("rcpt", in.rcpt),
		slog.String("domain", domainOf(in.rcpt)), slog.String("relay", "listmail"), slog.String("list", in.addr.List),
		slog.String("role", in.addr.Role.String()), slog.String("status", r.Status.String()), slog.String("reply", r.Text))
	return r
}

// errPermanent marks a failure that no retry mends.
var errPermanent = errors.New("permanent failure")

// forward passes in on to the list's owner from sender.
func (s *Service) forward(ctx context.Context, in incoming, sender string) (string, error) {
	if s.cfg.Queue == nil {
		return "", errNoQueue
	}
	body := newStreamBody(in.open, in.size)
	m, err := s.cfg.Expander.ForwardToOwner(ctx, expander.Post{ID: in.qid, Received: s.cfg.Now(), Sender: in.sender,
		Helo: "listmail", Lists: []string{in.addr.List}, Body: body}, in.addr.List, sender, s.cfg.IDs.Next())
	if errors.Is(err, expander.ErrUnknownRecipient) {
		s.log.Warn("listmail: the list has no owner to forward to; dropped", "qid", in.qid, "list", in.addr.List, "rcpt", in.rcpt)
		return "the list has no owner; dropped", nil
	}
	if err != nil {
		return "", err
	}
	if err := s.cfg.Queue.Enqueue(ctx, m); err != nil {
		return "", fmt.Errorf("queue the forward to the owner: %w", err)
	}
	return "forwarded to the owner as " + m.ID, nil
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}
