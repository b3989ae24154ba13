package moderation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"fanmail/dkim"
	"fanmail/envelope"
	"fanmail/expander"
	"fanmail/listaddr"
	"fanmail/listmail"
	"fanmail/lists"
	"fanmail/queuegroups"
)

// Store is what the Runner needs of the list store; *lists.Store is one.
type Store interface {
	Version(ctx context.Context) (int64, error)
	FindList(ctx context.Context, list string) (lists.List, error)
	Moderators(ctx context.Context, list string) ([]string, error)
	Posts(ctx context.Context, f lists.PostFilter) ([]lists.Post, error)
	CopyPostBody(ctx context.Context, id int64, w io.Writer) (int64, error)
	IssueModerationTokens(ctx context.Context, id int64, addrs []string) ([]string, error)
	ClaimNotice(ctx context.Context, id int64, claim string) (bool, error)
	MarkNotified(ctx context.Context, id int64) error
	Claim(ctx context.Context, id int64, qid string) (bool, error)
	DeletePost(ctx context.Context, id int64) error
	Retry(ctx context.Context, id int64, next time.Time, reason string) error
	Unclaim(ctx context.Context, id int64, claim string) error
	Expire(ctx context.Context, now time.Time) ([]lists.Post, error)
	NodeStarted(ctx context.Context, node, version string, now time.Time) error
	Heartbeat(ctx context.Context, node string, now time.Time) error
	NodeStopped(ctx context.Context, node string, now time.Time) error
}

// Distributor renders an accepted post for its list as if it had just
// arrived; *expander.Expander is one.
type Distributor interface {
	Distribute(ctx context.Context, p expander.Post, list, qid string) (*queuegroups.Message, error)
}

// Queue is the spool; *queuegroups.Queue is one.
type Queue interface {
	Enqueue(ctx context.Context, m *queuegroups.Message) error
	Has(id string) bool
}

// Config is what a Runner works with.
type Config struct {
	Store    Store
	Expander Distributor
	Queue    Queue
	IDs      *queuegroups.IDSource // claims carry their node name (queuegroups.Node)
	Keys     *dkim.Keyring         // signs notices for the list's domain; nil: unsigned
	Hostname string                // names notices' Message-IDs
	Logger   *slog.Logger
	// Poll is how often the store's version is read; default 200ms.
	Poll time.Duration
	// RescanEvery is how often the store is looked at with no version
	// change, for retries and expiry; default 15s.
	RescanEvery time.Duration
	// HeartbeatEvery is how often the node's heartbeat is written
	// (heartbeat.go); default lists.HeartbeatEvery, which the store's
	// rule for a gone node (lists.GoneAfter) counts on.
	HeartbeatEvery time.Duration
	// Version is the fanmail version the node's start records.
	Version string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Runner works through the posts the store holds. See the package doc.
type Runner struct {
	cfg Config
	log *slog.Logger
}

// New returns a Runner; Run starts it.
func New(cfg Config) *Runner {
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.RescanEvery <= 0 {
		cfg.RescanEvery = 15 * time.Second
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = lists.HeartbeatEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg, log: cfg.Logger}
}

// Run records the node's start, settles the claims a crash left, then
// works, with a heartbeat, until ctx ends, and records the clean stop.
func (r *Runner) Run(ctx context.Context) {
	if node := r.cfg.IDs.Node(); node != "" {
		beating := make(chan struct{})
		started := r.started(ctx, node)
		go func() {
			defer close(beating)
			r.heartbeat(ctx, node, started)
		}()
		defer func() {
			<-beating
			r.stopped(node)
		}()
	}
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	recovered := false
	last, lastScan := int64(-1), time.Time{}
	var quietUntil time.Time // after a failed scan, only the periodic rescan
	storeDown := false       // Version failed at the last poll
	recoverFailed := false   // recover failed and said so
	for {
		now := r.cfg.Now()
		if !recovered {
			// Posts claimed before a crash wait until this succeeds.
			if err := r.recover(ctx); err != nil {
				if ctx.Err() == nil && !recoverFailed {
					r.log.Error("moderation: cannot settle claims left by a crash; retrying", "err", err)
					recoverFailed = true
				}
			} else {
				recovered = true
			}
		}
		v, err := r.cfg.Store.Version(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !storeDown:
			// Once per outage, not per poll: a shared store can be
			// unreachable for a while.
			r.log.Error("moderation: list store unreachable; retrying", "err", err)
			storeDown = true
		case err == nil && storeDown:
			r.log.Info("moderation: list store reachable again")
			storeDown = false
		}
		due := now.Sub(lastScan) >= r.cfg.RescanEvery
		if recovered && err == nil && (due || (v != last && !now.Before(quietUntil))) {
			// The version is read before the scan: a change made while
			// it runs is seen on the next tick (our own writes cost one
			// idle scan, which writes nothing). A scan that fails (the
			// queue refusing, say) is not retried on its own writes'
			// version change, only at the next rescan.
			last, lastScan = v, now
			r.expire(ctx, now)
			if err := r.scan(ctx, now); err != nil && ctx.Err() == nil {
				r.log.Error("moderation: scan of held posts", "err", err)
				quietUntil = now.Add(r.cfg.RescanEvery)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recover settles the claims this node left in a crash: one whose
// message is in the queue is finished (the crash came between queueing
// and deleting the post); any other is given up, so the post is done
// again. Claims are this node's when they carry its name (every ID from
// IDs does), or none: those were taken before nodes had names. The
// claims of other nodes sharing the store are theirs to settle; those of
// a node that never comes back are settled by a replacement started with
// its [node] name, or released by an operator (fanmail mod release), and
// then taken by whichever node scans next.
func (r *Runner) recover(ctx context.Context) error {
	claimed, err := r.cfg.Store.Posts(ctx, lists.PostFilter{Claimed: true})
	if err != nil {
		return err
	}
	node := r.cfg.IDs.Node()
	for _, p := range claimed {
		if n := queuegroups.Node(p.Claim); n != "" && n != node {
			continue
		}
		switch {
		case p.State != lists.PostHeld && r.cfg.Queue.Has(p.Claim):
			r.log.Info("moderation: post was queued before a crash", "post", p.ID, "list", p.List, "qid", p.Claim)
			err = r.cfg.Store.DeletePost(ctx, p.ID)
		default:
			// A held post's claim is for sending notices: they go again.
			err = r.cfg.Store.Unclaim(ctx, p.ID, p.Claim)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Scan does what is due now once; Run calls it. Tests call it to step.
func (r *Runner) Scan(ctx context.Context) error {
	return r.scan(ctx, r.cfg.Now())
}

func (r *Runner) scan(ctx context.Context, now time.Time) error {
	due, err := r.cfg.Store.Posts(ctx, lists.PostFilter{Due: now})
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range due {
		if ctx.Err() != nil {
			break
		}
		var err error
		switch p.State {
		case lists.PostHeld:
			err = r.notify(ctx, p, now)
		case lists.PostAccepted:
			err = r.distribute(ctx, p, now)
		case lists.PostRejected:
			err = r.tellRejected(ctx, p, now)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("post %d to %s: %w", p.ID, p.List, err))
		}
	}
	return errors.Join(errs...)
}

// Expire deletes what ran out of time; Run calls it before every scan.
func (r *Runner) Expire(ctx context.Context) { r.expire(ctx, r.cfg.Now()) }

func (r *Runner) expire(ctx context.Context, now time.Time) {
	gone, err := r.cfg.Store.Expire(ctx, now)
	if err != nil {
		r.log.Error("moderation: expire held posts", "err", err)
		return
	}
	for _, p := range gone {
		r.log.Warn("held post expired; discarded", "post", p.ID, "list", p.List, "orig_qid", p.QueueID,
			"from", p.Sender, "state", string(p.State), "why", p.Reason)
	}
}

// notify sends each moderator (or, with none, the owner) a notice of a
// held post with a token of their own, then marks it notified. A crash
// before the mark sends the notices again, with new tokens; the old
// ones still work.
func (r *Runner) notify(ctx context.Context, p lists.Post, now time.Time) error {
	// Of several nodes sharing the store, one notifies.
	claim := r.cfg.IDs.Next()
	got, err := r.cfg.Store.ClaimNotice(ctx, p.ID, claim)
	if err != nil || !got {
		return err
	}
	if err := r.notifyClaimed(ctx, p, now); err != nil {
		return errors.Join(err, r.cfg.Store.Unclaim(ctx, p.ID, claim))
	}
	return nil
}

func (r *Runner) notifyClaimed(ctx context.Context, p lists.Post, now time.Time) error {
	to, err := r.cfg.Store.Moderators(ctx, p.List)
	if err != nil {
		return err
	}
	if len(to) == 0 {
		l, err := r.cfg.Store.FindList(ctx, p.List)
		if err != nil {
			return err
		}
		if l.Owner != "" {
			to = []string{l.Owner}
		}
	}
	if len(to) == 0 {
		r.log.Warn("held post: the list has no moderator and no owner to notify; see fanmail mod ls",
			"post", p.ID, "list", p.List)
		return r.cfg.Store.MarkNotified(ctx, p.ID)
	}
	var post bytes.Buffer
	if _, err := r.cfg.Store.CopyPostBody(ctx, p.ID, &post); err != nil {
		return err
	}
	tokens, err := r.cfg.Store.IssueModerationTokens(ctx, p.ID, to)
	if errors.Is(err, lists.ErrDecided) || errors.Is(err, lists.ErrNoPost) {
		return nil // decided from another process meanwhile: nobody need be asked
	}
	if err != nil {
		return err
	}
	for i, mod := range to {
		n := notice{list: p.List, to: mod, auto: "auto-generated",
			subject: fmt.Sprintf("%s: post from %s held for approval: %s", p.List, orNone(p.From, p.Sender), p.Subject),
			replyTo: listaddr.Of(p.List, listaddr.Approve, tokens[i]),
			text:    moderatorText(p, tokens[i]),
			post:    bytes.NewReader(post.Bytes()), eightBit: has8bit(post.Bytes())}
		qid, err := r.send(ctx, n, now)
		if err != nil {
			return err
		}
		r.log.Info("moderation notice queued", "qid", qid, "post", p.ID, "list", p.List, "to", mod)
	}
	return r.cfg.Store.MarkNotified(ctx, p.ID)
}

// tellRejected sends the poster of a rejected post one notice (none to
// the null sender) and deletes the post.
func (r *Runner) tellRejected(ctx context.Context, p lists.Post, now time.Time) error {
	qid := r.cfg.IDs.Next()
	got, err := r.cfg.Store.Claim(ctx, p.ID, qid)
	if err != nil || !got {
		return err
	}
	if p.Sender == "" {
		r.log.Info("post rejected; its sender is the null sender, so nobody is told", "post", p.ID, "list", p.List)
		return r.cfg.Store.DeletePost(ctx, p.ID)
	}
	var post bytes.Buffer
	if _, err := r.cfg.Store.CopyPostBody(ctx, p.ID, &post); err != nil {
		return errors.Join(err, r.cfg.Store.Unclaim(ctx, p.ID, qid))
	}
	n := notice{list: p.List, to: p.Sender, auto: "auto-replied",
		subject: "Your post to " + p.List + " was rejected: " + p.Subject,
		text:    rejectText(p), post: bytes.NewReader(post.Bytes()), eightBit: has8bit(post.Bytes())}
	if _, err := r.sendAs(ctx, n, now, qid); err != nil {
		return errors.Join(err, r.cfg.Store.Unclaim(ctx, p.ID, qid))
	}
	r.log.Info("rejection notice queued", "qid", qid, "post", p.ID, "list", p.List, "to", p.Sender)
	return r.cfg.Store.DeletePost(ctx, p.ID)
}

// send composes n and queues it as list mail (listmail.Send).
func (r *Runner) send(ctx context.Context, n notice, now time.Time) (string, error) {
	return r.sendAs(ctx, n, now, r.cfg.IDs.Next())
}

func (r *Runner) sendAs(ctx context.Context, n notice, now time.Time, qid string) (string, error) {
	n.id, n.date = qid+"@"+r.cfg.Hostname, now
	msg, err := compose(n)
	if err != nil {
		return "", err
	}
	if err := listmail.Send(ctx, r.cfg.Queue, r.cfg.Keys, n.list, n.to, qid, now, msg); err != nil {
		return "", err
	}
	return qid, nil
}

// distribute claims an accepted post, has the expander render it for its
// list exactly as at arrival, queues it and deletes it. A DMARC lookup
// that fails again leaves it for a later try.
func (r *Runner) distribute(ctx context.Context, p lists.Post, now time.Time) error {
	qid := r.cfg.IDs.Next()
	got, err := r.cfg.Store.Claim(ctx, p.ID, qid)
	if err != nil || !got {
		return err
	}
	var body bytes.Buffer
	if _, err := r.cfg.Store.CopyPostBody(ctx, p.ID, &body); err != nil {
		return errors.Join(err, r.cfg.Store.Unclaim(ctx, p.ID, qid))
	}
	post := expander.Post{ID: p.QueueID, Received: p.Received, Sender: p.Sender, Helo: p.Helo,
		RemoteAddr: p.RemoteAddr, Lists: []string{p.List}, Body: envelope.Bytes(body.Bytes()), UTF8: p.SMTPUTF8}
	m, err := r.cfg.Expander.Distribute(ctx, post, p.List, qid)
	switch {
	case errors.Is(err, expander.ErrDeferred):
		next := now.Add(retryAfter(now.Sub(p.Received)))
		r.log.Warn("held post: distribution deferred", "post", p.ID, "list", p.List, "err", err, "next", next.Format(time.RFC3339))
		return r.cfg.Store.Retry(ctx, p.ID, next, err.Error())
	case errors.Is(err, lists.ErrNoList):
		r.log.Warn("accepted post dropped: its list was deleted", "post", p.ID, "list", p.List)
		return r.cfg.Store.DeletePost(ctx, p.ID)
	case err != nil:
		return errors.Join(err, r.cfg.Store.Retry(ctx, p.ID, now.Add(5*time.Minute), "distribution failed: "+err.Error()))
	}
	m.SMTPUTF8 = p.SMTPUTF8
	// The members are read as the queue writes them; a list without
	// members takes nothing, and the post is done all the same.
	if err := r.cfg.Queue.Enqueue(ctx, m); err != nil && !errors.Is(err, queuegroups.ErrNoRecipients) {
		return errors.Join(fmt.Errorf("queue post: %w", err), r.cfg.Store.Unclaim(ctx, p.ID, qid))
	}
	r.log.Info("held post distributed", "qid", qid, "orig_qid", p.QueueID, "post", p.ID, "list", p.List,
		"rcpts", m.Queued(), "decided_by", p.DecidedBy)
	return r.cfg.Store.DeletePost(ctx, p.ID)
}

// retryAfter is how long a post whose DMARC lookup failed waits for the
// next try: a tenth of its age, at least 30 seconds and at most 15
// minutes, so a brief DNS outage costs little delay and a long one
// little load.
func retryAfter(age time.Duration) time.Duration {
	return min(max(age/10, 30*time.Second), 15*time.Minute)
}

func orNone(from, sender string) string {
	switch {
	case from != "":
		return from
	case sender != "":
		return sender
	}
	return "<>"
}
