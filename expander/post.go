package expander

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"fanmail/dmarc"
	"fanmail/envelope"
	"fanmail/listaddr"
	"fanmail/lists"
	"fanmail/queuegroups"
	"fanmail/render"
)

// Post is one accepted message as ingress hands it over.
type Post struct {
	ID         string
	Received   time.Time
	Sender     string        // the poster's MAIL FROM: the policy looks at it; bounces go to the list
	Helo       string        // client's EHLO name
	RemoteAddr string        // client's IP address
	TLS        string        // the session's TLS ("version=TLS1.3 cipher=..."), "" in clear text
	UTF8       bool          // sent with SMTPUTF8 (RFC 6531)
	Lists      []string      // canonical recipients from Lookup: lists, their admin and command addresses, aliases
	Relay      []string      // recipients elsewhere, from a relay peer: passed on as they are (relay.go)
	Body       envelope.Body // header and body as received, CRLF; read for the header, the rest streamed
}

// Expansion is what Expand made of a post.
type Expansion struct {
	// Message is what goes to the queue now; it may have no recipients
	// (every list held or discarded the post).
	Message *queuegroups.Message
	// Stored are the posts now waiting in the list store (held for a
	// moderator, or for a DMARC lookup): the caller that cannot queue
	// Message gives them back with Withdraw before it answers 451.
	Stored []int64
	// Reply, when set, is the text of the 250 instead of "OK queued as
	// ID": what a moderator's command did.
	Reply string
	// Notes say, for the log, what each list did with the post.
	Notes []string
	// MessageID is the post's Message-ID as written, for the log; "" if
	// it has none.
	MessageID string
}

// ErrDeferred means a list's copy cannot be made yet: the DMARC policy of
// the author's domain could not be looked up. The post waits and is
// tried again; it is never sent on a guess.
var ErrDeferred = errors.New("distribution deferred")

// ErrBadHeader means the header of a post to a list does not parse, so
// no list's copy can be made of it.
var ErrBadHeader = render.ErrBadHeader

// CommandError is a moderator's command (LIST-approve+TOKEN,
// LIST-reject+TOKEN) that fanmail refuses: the token is unknown or
// expired, or its post was decided otherwise. Nothing changed. Reason is
// safe to show to the sender.
type CommandError struct {
	Reason string
	Err    error
}

func (e *CommandError) Error() string { return e.Reason }
func (e *CommandError) Unwrap() error { return e.Err }

// listPost is a post's fate on one list.
type listPost struct {
	list     string
	settings lists.Settings
	decision decision
}

// Expand decides what becomes of p on every list it is addressed to and
// builds the queue message: the body kept once, one part per list (its
// own copy) or envelope sender. Posts held or deferred are stored in the
// list store before it returns; a moderator's command is carried out. A
// list that rejects the post makes Expand return a *PolicyError, and
// then nothing at all is done with it.
func (x *Expander) Expand(ctx context.Context, p Post) (*Expansion, error) {
	header, err := readHeader(p.Body, MaxHeaderSize)
	if err != nil {
		return nil, err
	}
	if n := countReceived(header); n > maxHops {
		return nil, fmt.Errorf("%d Received headers: %w", n, ErrLoop)
	}
	parsed, infoErr := render.Parse(header)
	var info render.Info
	if parsed != nil {
		info = parsed.Info
	}
	exp := &Expansion{Message: &queuegroups.Message{ID: p.ID, Received: p.Received, Body: p.Body}, MessageID: info.MessageID}
	var aliased []string
	var posts []listPost
	var commands []target
	for _, rcpt := range p.Lists {
		if x.aliases != nil {
			if _, ok := x.aliases.isAlias(rcpt); ok {
				aliased = append(aliased, rcpt)
				continue
			}
		}
		t, err := x.target(ctx, rcpt)
		if err != nil {
			return nil, err
		}
		switch {
		case t.list == "":
			return nil, fmt.Errorf("%s: %w", rcpt, ErrUnknownRecipient)
		case t.role == listaddr.Confirm:
			exp.Message.Parts = append(exp.Message.Parts, x.internalPart(p, header, listaddr.Of(t.list, t.role, t.token)))
		case t.token != "":
			commands = append(commands, t)
		case t.role.Local() && (t.role != listaddr.Owner || p.Sender == ""):
			// Commands and bounces, and what comes to the owner from
			// the null sender (a bounce, too), go to package listmail.
			exp.Message.Parts = append(exp.Message.Parts, x.internalPart(p, header, t.admin))
		case t.owner != "":
			// Mail for the owner gets no list headers, and goes out
			// from the list's bounce address, so a failure never
			// bounces to whoever the poster claims to be.
			own := BounceAddress(t.list)
			if t.roleAddr {
				own = x.aliasBounce()
			}
			exp.Message.Parts = append(exp.Message.Parts, queuegroups.Part{Prefix: x.forwardPrefix(p, header, t.admin),
				Envelopes: x.router.Split(forwardSender(p.Sender, own), []string{t.owner})})
		default:
			lp, err := x.decidePost(ctx, t.list, info, infoErr, p.Sender)
			if err != nil {
				return nil, err
			}
			posts = append(posts, lp)
		}
	}
	// A reject is the reply, so it comes before anything is done.
	for _, lp := range posts {
		if lp.decision.verdict == reject {
			return nil, &PolicyError{List: lp.list, Reason: lp.decision.reason}
		}
	}
	for _, t := range commands {
		reply, err := x.runCommand(ctx, t)
		if err != nil {
			return nil, err
		}
		exp.Reply = joinReply(exp.Reply, reply)
		exp.Notes = append(exp.Notes, t.list+": "+reply)
	}
	for _, lp := range posts {
		if err := x.applyDecision(ctx, p, header, parsed, lp, exp); err != nil {
			x.Withdraw(ctx, exp.Stored)
			return nil, err
		}
	}
	if len(aliased) > 0 {
		parts, err := x.expandAliases(ctx, p, header, aliased)
		if err != nil {
			x.Withdraw(ctx, exp.Stored)
			return nil, err
		}
		exp.Message.Parts = append(exp.Message.Parts, parts...)
	}
	if len(p.Relay) > 0 {
		exp.Message.Parts = append(exp.Message.Parts, x.relayPart(p))
	}
	if exp.Reply != "" && len(exp.Message.Parts) > 0 {
		exp.Reply = "" // a post goes out too: its queue ID is the answer
	}
	return exp, nil
}

// decidePost checks a post to list for a loop and applies the list's
// posting policy.
func (x *Expander) decidePost(ctx context.Context, list string, info render.Info, infoErr error, sender string) (listPost, error) {
	if infoErr != nil {
		return listPost{}, fmt.Errorf("%s: %w", list, infoErr)
	}
	for _, id := range info.ListIDs {
		if strings.EqualFold(id, listaddr.ListID(list)) {
			return listPost{}, fmt.Errorf("%s: post already carries this list's List-Id: %w", list, ErrLoop)
		}
	}
	s, err := x.Settings(ctx, list)
	if err != nil {
		return listPost{}, err
	}
	d, err := x.decide(ctx, list, s, poster{sender: sender, from: info.From})
	if err != nil {
		return listPost{}, err
	}
	return listPost{list: list, settings: s, decision: d}, nil
}

// applyDecision does what lp's decision says: a part for the queue, a
// post in the store, or nothing.
func (x *Expander) applyDecision(ctx context.Context, p Post, header []byte, parsed *render.Parsed, lp listPost, exp *Expansion) error {
	switch lp.decision.verdict {
	case discard:
		exp.Notes = append(exp.Notes, lp.list+": discarded: "+lp.decision.reason)
		return nil
	case hold:
		id, err := x.keep(ctx, p, parsed.Info, lp, lists.PostHeld, lp.decision.reason)
		if err != nil {
			return err
		}
		exp.Stored = append(exp.Stored, id)
		exp.Notes = append(exp.Notes, fmt.Sprintf("%s: held as post %d: %s", lp.list, id, lp.decision.reason))
		return nil
	}
	part, err := x.listPart(ctx, p, header, parsed, lp.list, lp.settings)
	if errors.Is(err, ErrDeferred) {
		id, serr := x.keep(ctx, p, parsed.Info, lp, lists.PostAccepted, err.Error())
		if serr != nil {
			return serr
		}
		exp.Stored = append(exp.Stored, id)
		exp.Notes = append(exp.Notes, fmt.Sprintf("%s: waiting as post %d: %v", lp.list, id, err))
		return nil
	}
	if err != nil {
		return err
	}
	exp.Message.Parts = append(exp.Message.Parts, part)
	return nil
}

// keep stores p in the list store for lp's list, in state st.
func (x *Expander) keep(ctx context.Context, p Post, info render.Info, lp listPost, st lists.PostState, reason string) (int64, error) {
	days := lp.settings.HoldDays
	if days <= 0 {
		days = lists.DefaultSettings().HoldDays
	}
	id, err := x.store.AddPost(ctx, lists.Post{List: lp.list, State: st, Reason: reason, QueueID: p.ID,
		Received: p.Received, Sender: p.Sender, From: info.From, Subject: info.Subject, Helo: p.Helo,
		RemoteAddr: p.RemoteAddr, Expires: p.Received.Add(time.Duration(days) * 24 * time.Hour), SMTPUTF8: p.UTF8},
		envelope.Reader(p.Body))
	if err != nil {
		return 0, fmt.Errorf("store post for %s: %w", lp.list, err)
	}
	return id, nil
}

// Withdraw deletes posts Expand stored, for a post the client is told
// to send again.
func (x *Expander) Withdraw(ctx context.Context, ids []int64) {
	for _, id := range ids {
		if err := x.store.DeletePost(ctx, id); err != nil && !errors.Is(err, lists.ErrNoPost) {
			// It stays held, and the retried post is held again: two
			// for a moderator to see, never a loss.
			continue
		}
	}
}

// listPart makes list's copy of p and the part that sends it to every
// member (streamed from the store when the queue writes the part):
// Received, then the copy's header (and what its body adds before the
// post's), from the list's bounce address. It asks the DMARC policy of
// the author's domain first when the list would act on it; a failed
// lookup is ErrDeferred.
func (x *Expander) listPart(ctx context.Context, p Post, header []byte, parsed *render.Parsed, list string, s lists.Settings) (queuegroups.Part, error) {
	info := parsed.Info
	policy := dmarc.PolicyNone
	if x.dmarc != nil && s.DMARC != lists.DMARCNone && info.From != "" {
		res, err := x.dmarc.Lookup(ctx, domainOf(info.From))
		if err != nil {
			return queuegroups.Part{}, fmt.Errorf("%w: DMARC lookup for %s failed: %v", ErrDeferred, domainOf(info.From), err)
		}
		policy = res.Policy
	}
	c, err := render.Render(render.Post{Header: header, Parsed: parsed, Body: p.Body, Size: p.Body.Size(), QueueID: p.ID, Received: p.Received},
		render.List{Address: list, Settings: s}, render.Options{Hostname: x.hostname, DMARC: policy, Keys: x.keys})
	if err != nil {
		return queuegroups.Part{}, fmt.Errorf("copy for %s: %w", list, err)
	}
	var prefix bytes.Buffer
	prefix.Grow(300 + len(c.Header) + len(c.Lead))
	x.received(&prefix, p, list)
	prefix.Write(c.Header)
	prefix.Write(c.Lead)
	// The members are streamed from the store while the queue writes
	// the envelopes, so a list of any size is never held whole.
	// A personalized list's envelopes are cut as any other's (up to r
	// members of one domain): delivery sends each member its own
	// transaction over the same connections, from c.Personal.
	part := queuegroups.Part{Prefix: prefix.Bytes(), Skip: c.Skip, Personal: c.Personal,
		Stream: func(yield func(envelope.Envelope) error) error {
			cut := x.router.Cutter(BounceAddress(list), yield)
			if err := x.eachMember(ctx, list, cut.Add); err != nil {
				return err
			}
			return cut.Flush()
		}}
	if c.Insert != nil {
		part.Insert, part.InsertAt = c.Insert, c.InsertAt
	}
	return part, nil
}

// Distribute makes the queue message of a post the list store held for
// list, now accepted: the same copy Expand makes of a post the list
// takes, under queue ID qid. The Received field and a Message-ID the
// post lacks still name the ID it arrived with (p.ID). A DMARC lookup
// that fails is ErrDeferred; a list that no longer exists, ErrNoList.
func (x *Expander) Distribute(ctx context.Context, p Post, list, qid string) (*queuegroups.Message, error) {
	header, err := readHeader(p.Body, MaxHeaderSize)
	if err != nil {
		return nil, err
	}
	parsed, err := render.Parse(header)
	if err != nil {
		return nil, err
	}
	s, err := x.Settings(ctx, list)
	if err != nil {
		return nil, err
	}
	part, err := x.listPart(ctx, p, header, parsed, list, s)
	if err != nil {
		return nil, err
	}
	// Received is when the queue took it: its lifetime starts now.
	return &queuegroups.Message{ID: qid, Received: x.now(), Body: p.Body, Parts: []queuegroups.Part{part}}, nil
}

// internalPart is the part of a post to one of a list's own addresses
// that package listmail handles: one envelope to that address in the
// control group, delivered inside fanmail (listmail.Deliverer), from
// the poster as they wrote it, since a command is answered and a bounce
// judged by who sent it.
func (x *Expander) internalPart(p Post, header []byte, rcpt string) queuegroups.Part {
	return queuegroups.Part{Prefix: x.forwardPrefix(p, header, rcpt), Envelopes: []envelope.Envelope{{
		Sender: p.Sender, Group: queuegroups.ControlGroup, Domain: domainOf(rcpt), Recipients: []string{rcpt}}}}
}

// ForwardToOwner makes the queue message, under queue ID qid, that
// forwards p, mail for list's owner, to the owner as Expand forwards
// mail to owner-LIST: the post's own header, from sender (the list's
// bounce address, or the null sender for a bounce passed on, so that
// its failure makes no bounce in turn). A list without an owner is
// ErrUnknownRecipient.
func (x *Expander) ForwardToOwner(ctx context.Context, p Post, list, sender, qid string) (*queuegroups.Message, error) {
	header, err := readHeader(p.Body, MaxHeaderSize)
	if err != nil {
		return nil, err
	}
	l, err := x.store.FindList(ctx, list)
	if err != nil {
		return nil, err
	}
	if l.Owner == "" {
		return nil, fmt.Errorf("%s has no owner: %w", list, ErrUnknownRecipient)
	}
	admin := listaddr.Of(l.Address, listaddr.Owner, "")
	return &queuegroups.Message{ID: qid, Received: x.now(), Body: p.Body, Parts: []queuegroups.Part{{
		Prefix: x.forwardPrefix(p, header, admin), Envelopes: x.router.Split(sender, []string{l.Owner})}}}, nil
}

// forwardPrefix is what a copy that keeps the post's own header gets in
// front: Received, and the Date and Message-ID the post lacks (the same
// a list's copy of it gets).
func (x *Expander) forwardPrefix(p Post, header []byte, rcpt string) []byte {
	var b bytes.Buffer
	x.received(&b, p, rcpt)
	b.Write(render.FixupFields(header, render.Post{QueueID: p.ID, Received: p.Received}, x.hostname))
	return b.Bytes()
}

// checkCommand tells whether a moderator's command with t's token would
// be taken (at RCPT).
func (x *Expander) checkCommand(ctx context.Context, t target) error {
	if t.role == listaddr.Confirm {
		return confirmError(x.store.CheckConfirmToken(ctx, t.list, t.token))
	}
	err := x.store.CheckModerationToken(ctx, t.list, t.token, t.role.String())
	return commandError(err)
}

// confirmError turns the error of a confirmation token into a
// CommandError whose reason says what happened; others stay as they
// are.
func confirmError(err error) error {
	var used *lists.ConfirmUsedError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, lists.ErrBadToken):
		return &CommandError{Reason: "This confirmation address is unknown or has expired; nothing was changed. Send the request again", Err: err}
	case errors.As(err, &used):
		return &CommandError{Reason: "This confirmation address was already used; nothing was changed", Err: err}
	}
	return err
}

// runCommand carries out a moderator's command and says what it did.
func (x *Expander) runCommand(ctx context.Context, t target) (string, error) {
	use, err := x.store.UseModerationToken(ctx, t.list, t.token, t.role.String())
	if err != nil {
		return "", commandError(err)
	}
	if use.Already {
		return fmt.Sprintf("Already %s: nothing changed", pastTense(t.role)), nil
	}
	return fmt.Sprintf("%s post %d to %s, by %s", capitalize(pastTense(t.role)), use.Post.ID, t.list, use.By), nil
}

// commandError turns a token error into a CommandError whose reason
// says what happened; other errors stay as they are.
func commandError(err error) error {
	var used *lists.TokenUsedError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, lists.ErrBadToken):
		return &CommandError{Reason: "This moderation address is unknown or has expired; nothing was changed", Err: err}
	case errors.As(err, &used):
		return &CommandError{Reason: capitalize(used.Error()) + "; nothing was changed", Err: err}
	}
	return err
}

func pastTense(r listaddr.Role) string {
	if r == listaddr.Reject {
		return "rejected"
	}
	return "approved"
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func joinReply(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}
