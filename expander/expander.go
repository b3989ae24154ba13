// Package expander is the second stage of the pipeline: it turns one
// accepted post and its recipients (lists, their own addresses, aliases,
// and the command addresses of moderators) into queue parts, one per
// list or envelope sender, each with its copy of the post and its
// recipients cut into envelopes.
//
// A list's own addresses (package listaddr) are answered by package
// listmail, at delivery: mail to LIST-request, -subscribe,
// -unsubscribe, -confirm+TOKEN and -bounces, and what comes to
// owner-LIST from the null sender, becomes one envelope to that very
// address in the control group, which listmail's deliverer takes
// (Internal tells it which addresses are such); other mail to
// owner-LIST is forwarded to the owner from the list's bounce address,
// as ForwardToOwner does for listmail.
//
// For each list the post is addressed to it decides, before the reply to
// DATA, what becomes of the post (policy.go): distributed, held for a
// moderator in the list store, rejected (the reply is 550 5.7.1) or
// discarded. A distributed post gets the list's copy (package render:
// the list's header, footer, DMARC-safe From and DKIM signature, made
// once per post and list); a post whose author's DMARC policy cannot be
// looked up waits in the store, and package moderation distributes it
// later through Distribute, exactly as Expand would have.
//
// It owns the routing that sendmail calls the queuegroup ruleset
// (route.go): a Router sends each destination domain to a queue group by
// ordered domain patterns and cuts that domain's recipients into
// envelopes of at most the group's r=. The queue then stores envelopes
// already routed. Recipients are never looked up in the DNS (sendmail's
// nocanonify): addresses are used as written, with lowercase domains.
// The one DNS question it asks is the poster's DMARC policy, through
// the resolver delivery uses.
package expander

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"fanmail/dkim"
	"fanmail/dmarc"
	"fanmail/envelope"
	"fanmail/listaddr"
	"fanmail/lists"
	"fanmail/queuegroups"
)

// Store is what the expander needs of the list store; *lists.Store is
// one.
type Store interface {
	FindList(ctx context.Context, address string) (lists.List, error)
	Members(ctx context.Context, list string) ([]string, error)
	EachMember(ctx context.Context, list string, fn func(addr, domain string) error) error
	Version(ctx context.Context) (int64, error)
	Settings(ctx context.Context, list string) (lists.Settings, error)
	IsMember(ctx context.Context, list, addr string) (bool, error)
	IsModerator(ctx context.Context, list, addr string) (bool, error)
	AddPost(ctx context.Context, p lists.Post, body io.Reader) (int64, error)
	DeletePost(ctx context.Context, id int64) error
	CheckModerationToken(ctx context.Context, list, token, action string) error
	CheckConfirmToken(ctx context.Context, list, token string) error
	UseModerationToken(ctx context.Context, list, token, action string) (lists.TokenUse, error)
}

// DMARC looks up the DMARC policy of a domain; *dmarc.Checker is one.
type DMARC interface {
	Lookup(ctx context.Context, domain string) (dmarc.Result, error)
}

// ErrUnknownRecipient means the address is neither a list nor anything
// else fanmail accepts mail for.
var ErrUnknownRecipient = errors.New("no such list")

// ErrLoop means a post is going round in circles: it carries the List-Id
// of the list it is sent to (our own distribution came back), or more
// Received headers than maxHops.
var ErrLoop = errors.New("mail loop")

// maxHops is Postfix's hopcount_limit: a post with more Received headers
// has passed through too many servers to be anything but a loop.
const maxHops = 50

// Expander expands posts to list members.
type Expander struct {
	store    Store
	hostname string
	router   *Router
	aliases  *Aliases      // nil: no aliases files
	roles    Roles         // postmaster and abuse (roles.go)
	dmarc    DMARC         // nil: no lookups, no list munges or wraps
	keys     *dkim.Keyring // nil: copies are not signed
	now      func() time.Time

	mu          sync.Mutex
	version     int64
	checked     time.Time                  // when version was last read from the store
	members     map[string][]string        // list → members of lists up to memberCacheMax, valid while version holds
	settings    map[string]lists.Settings  // list → settings, valid while version holds
	addresses   map[string]target          // lowercase address → what it names; lists and their admin addresses only
	unknown     unknownCache               // lowercase addresses that name nothing, bounded
	roleDomains map[string]map[string]bool // "" → the domains with lists, for roles.go
}

// versionTTL bounds how stale the caches can be: the store's version is
// read at most this often, so a busy server does not query SQLite on
// every RCPT, and a list change made from the CLI is seen within it.
const versionTTL = 50 * time.Millisecond

// New returns an expander that routes each domain to a queue group and
// cuts envelopes of that group's size; a nil router sends every domain to
// the default group.
func New(store Store, hostname string, router *Router) *Expander {
	if router == nil {
		router, _ = NewRouter(RouterConfig{})
	}
	return &Expander{store: store, hostname: hostname, router: router, now: time.Now,
		members: map[string][]string{}, settings: map[string]lists.Settings{},
		addresses: map[string]target{}, unknown: newUnknownCache(maxUnknownCached),
		roleDomains: map[string]map[string]bool{}}
}

// WithDMARC makes x look up the DMARC policy of each post's author, so
// that lists with dmarc = munge or wrap make their copies DMARC-safe.
func (x *Expander) WithDMARC(d DMARC) *Expander {
	x.dmarc = d
	return x
}

// WithKeys makes x sign every copy whose From: domain or list domain
// has a key in kr.
func (x *Expander) WithKeys(kr *dkim.Keyring) *Expander {
	x.keys = kr
	return x
}

// WithAliases makes x serve the aliases in a, looked up before lists.
func (x *Expander) WithAliases(a *Aliases) *Expander {
	x.aliases = a
	return x
}

// ErrNoTargets means an alias expanded to nothing deliverable: every
// branch failed (a loop, a missing :include:, a refused target).
var ErrNoTargets = errors.New("alias expansion left no recipients")

// Lookup returns the canonical form of rcpt if fanmail takes mail for
// it, or ErrUnknownRecipient. It takes aliases (when aliases files are
// served, and before lists, as sendmail consults aliases first), lists
// (case-insensitively), and the addresses of a list (package listaddr):
// owner-LIST and LIST-owner, which reach the list's owner, when it has
// one; LIST-bounces (and its VERP forms), LIST-request, LIST-subscribe
// and LIST-unsubscribe, whose mail package listmail handles; and
// the addresses with a token, LIST-confirm+TOKEN and a moderator's
// LIST-approve+TOKEN and LIST-reject+TOKEN, for a token that exists and
// was not used for something else (else a *CommandError).
func (x *Expander) Lookup(ctx context.Context, rcpt string) (string, error) {
	if x.aliases != nil {
		if canon, ok := x.aliases.isAlias(rcpt); ok {
			return canon, nil
		}
	}
	t, err := x.target(ctx, rcpt)
	if err != nil {
		return "", err
	}
	switch {
	case t.list == "":
		return "", ErrUnknownRecipient
	case t.token != "":
		if err := x.checkCommand(ctx, t); err != nil {
			return "", err
		}
		return listaddr.Of(t.list, t.role, t.token), nil
	case t.admin != "":
		return t.admin, nil
	}
	return t.list, nil
}

// target is what an address names: a list, one of its administrative
// addresses (owner set), or a moderator's command (token set).
type target struct {
	list     string        // the list's address; "" if the address is nothing here
	role     listaddr.Role // what the address is for
	owner    string        // the owner to forward to, for owner-LIST
	admin    string        // the list's own address, as canonical as the list's
	token    string        // for a command address, lowercase
	roleAddr bool          // postmaster or abuse (roles.go): forwarded from the aliases' bounce address
	verp     bool          // LIST-bounces+LOCAL=DOMAIN: as many as members, so never cached
}

// target resolves rcpt, from the caches while the store is unchanged.
// What exists is cached without bound, as the store bounds it, except
// command addresses, of which there are as many as tokens; what does not
// is anything a client cares to send, so those answers go to a bounded
// cache (cache.go).
func (x *Expander) target(ctx context.Context, rcpt string) (target, error) {
	if err := x.refresh(ctx); err != nil {
		return target{}, err
	}
	key := strings.ToLower(rcpt)
	x.mu.Lock()
	v := x.version
	t, ok := x.addresses[key]
	if !ok {
		ok = x.unknown.has(key)
	}
	x.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := x.resolve(ctx, rcpt)
	if err != nil {
		return t, err
	}
	x.mu.Lock()
	if v == x.version {
		switch {
		case t.list == "":
			x.unknown.add(key)
		case t.token == "" && !t.verp:
			x.addresses[key] = t
		}
	}
	x.mu.Unlock()
	return t, nil
}

// cached returns m[key], or what load returns, kept in m unless the
// store changed while it loaded. m is one of x's caches, which refresh
// empties when the store's version changes.
func cached[T any](ctx context.Context, x *Expander, m map[string]T, key string, load func() (T, error)) (T, error) {
	if err := x.refresh(ctx); err != nil {
		var zero T
		return zero, err
	}
	x.mu.Lock()
	v := x.version
	val, ok := m[key]
	x.mu.Unlock()
	if ok {
		return val, nil
	}
	val, err := load()
	if err != nil {
		return val, err
	}
	x.mu.Lock()
	if v == x.version {
		m[key] = val
	}
	x.mu.Unlock()
	return val, nil
}

// resolve tries each reading of rcpt (listaddr.Parse) against the
// store: the list itself first, then a role address (postmaster, abuse:
// roles.go), then the forms of a list's own addresses.
func (x *Expander) resolve(ctx context.Context, rcpt string) (target, error) {
	readings := listaddr.Parse(rcpt)
	for i, a := range readings {
		if i == 1 {
			if t, ok, err := x.role(ctx, rcpt); ok || err != nil {
				return t, err
			}
		}
		t, ok, err := x.reading(ctx, rcpt, a)
		if ok || err != nil {
			return t, err
		}
	}
	if len(readings) < 2 {
		if t, ok, err := x.role(ctx, rcpt); ok || err != nil {
			return t, err
		}
	}
	return target{}, nil
}

// reading resolves one reading of rcpt, if its list exists and the
// reading makes sense for it.
func (x *Expander) reading(ctx context.Context, rcpt string, a listaddr.Address) (target, bool, error) {
	l, err := x.store.FindList(ctx, a.List)
	switch {
	case errors.Is(err, lists.ErrNoList):
		return target{}, false, nil
	case err != nil:
		return target{}, false, fmt.Errorf("look up %s: %w", rcpt, err)
	}
	t := target{list: l.Address, role: a.Role}
	switch a.Role {
	case listaddr.Owner:
		if l.Owner == "" {
			return target{}, false, nil // nobody to forward to: as if it did not exist
		}
		t.owner, t.admin = l.Owner, listaddr.Of(l.Address, a.Role, "")
	case listaddr.Request, listaddr.Subscribe, listaddr.Unsubscribe:
		t.admin = listaddr.Of(l.Address, a.Role, "")
	case listaddr.Bounces:
		// The member part of a VERP address is kept as written: it is
		// an address, whose local part may be case-sensitive.
		t.admin, t.verp = listaddr.Of(l.Address, a.Role, a.Token), a.Token != ""
	case listaddr.Approve, listaddr.Reject, listaddr.Confirm:
		t.token = strings.ToLower(a.Token)
	}
	return t, true, nil
}

// refresh reads the store's version if the last read is older than
// versionTTL, and empties the caches when it changed.
func (x *Expander) refresh(ctx context.Context) error {
	x.mu.Lock()
	fresh := time.Since(x.checked) < versionTTL
	x.mu.Unlock()
	if fresh {
		return nil
	}
	v, err := x.store.Version(ctx)
	if err != nil {
		return fmt.Errorf("list store version: %w", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.checked = time.Now()
	if v != x.version {
		x.version = v
		clear(x.members)
		clear(x.settings)
		clear(x.addresses)
		x.unknown.reset()
		clear(x.roleDomains)
	}
	return nil
}

// expandAliases expands the aliases a post is addressed to, together (so
// a target reached twice gets the post once), into one part per envelope
// sender: owner-NAME where the aliases file has one, else the aliases'
// bounce address, never the poster's (no backscatter).
// |program and /file targets get envelopes of their own in the local
// pseudo-domain, one target each.
func (x *Expander) expandAliases(ctx context.Context, p Post, header []byte, rcpts []string) ([]queuegroups.Part, error) {
	res, err := x.aliases.expander(listSource{x}).Expand(ctx, rcpts...)
	if err != nil {
		return nil, fmt.Errorf("expand aliases: %w", err)
	}
	if len(res.Targets) == 0 {
		return nil, fmt.Errorf("%s: %w (%d errors)", strings.Join(rcpts, ", "), ErrNoTargets, len(res.Failures))
	}
	prefix := x.forwardPrefix(p, header, rcpts[0])
	var parts []queuegroups.Part
	dropped := 0
	for _, g := range bySender(res.Targets, forwardSender(p.Sender, x.aliasBounce())) {
		var addrs []string
		for _, a := range g.addrs {
			if x.aliases.isLocalDomain(a) {
				// A local name no alias or list defines is a mailbox, and
				// fanmail has none: sending it out would come straight back.
				x.aliases.log.Warn("aliases: no local mailbox; target dropped", "qid", p.ID, "target", a)
				dropped++
				continue
			}
			addrs = append(addrs, a)
		}
		envs := x.router.Split(g.sender, addrs)
		for _, t := range g.local {
			envs = append(envs, envelope.Local(g.sender, t))
		}
		if len(envs) > 0 {
			parts = append(parts, queuegroups.Part{Prefix: prefix, Envelopes: envs})
		}
	}
	if dropped == len(res.Targets) {
		return nil, fmt.Errorf("%s: %w (only local mailboxes)", strings.Join(rcpts, ", "), ErrNoTargets)
	}
	return parts, nil
}

// received writes the Received header for p's copies addressed to rcpt.
func (x *Expander) received(w *bytes.Buffer, p Post, rcpt string) {
	// The protocol names of RFC 3848 and RFC 6531: ESMTP, ESMTPS with
	// TLS, UTF8SMTP(S) with SMTPUTF8; the TLS parameters as a comment.
	proto, tlsNote := "ESMTP", ""
	if p.UTF8 {
		proto = "UTF8SMTP"
	}
	if p.TLS != "" {
		proto += "S"
		tlsNote = "\r\n\t(" + p.TLS + ")"
	}
	forRcpt := "" // one recipient is named (RFC 5321 §4.4); several are not
	if rcpt != "" {
		forRcpt = "\r\n\tfor <" + rcpt + ">"
	}
	fmt.Fprintf(w, "Received: from %s (%s)\r\n\tby %s (fanmail) with %s id %s%s%s; %s\r\n",
		p.Helo, bracket(p.RemoteAddr), x.hostname, proto, p.ID, tlsNote, forRcpt, p.Received.Format(time.RFC1123Z))
}

// BounceAddress is the envelope sender of everything fanmail sends for
// a list: LIST-bounces, whose mail package listmail reads for the
// members' bounces, passing what names no member on to the owner. It
// is never the poster's address.
func BounceAddress(list string) string { return listaddr.Of(list, listaddr.Bounces, "") }

// Settings returns a list's settings, cached until the store changes.
func (x *Expander) Settings(ctx context.Context, list string) (lists.Settings, error) {
	return cached(ctx, x, x.settings, strings.ToLower(list), func() (lists.Settings, error) {
		s, err := x.store.Settings(ctx, list)
		if err != nil {
			return s, fmt.Errorf("settings of %s: %w", list, err)
		}
		return s, nil
	})
}

// memberCacheMax is the largest list whose members the expander keeps
// between posts (until the store changes): small lists, posted to often,
// are read once; a bigger one is streamed from the store each post.
const memberCacheMax = 10000

// Members returns a list's members, cached until the store changes if
// the list is small.
func (x *Expander) Members(ctx context.Context, list string) ([]string, error) {
	var out []string
	err := x.eachMember(ctx, list, func(addr, _ string) error {
		out = append(out, addr)
		return nil
	})
	if out == nil && err == nil {
		out = []string{}
	}
	return out, err
}

// eachMember calls fn with each member of list and its domain, ordered
// by domain, from the cache or streamed from the store; a list that
// turns out to have at most memberCacheMax members is cached.
func (x *Expander) eachMember(ctx context.Context, list string, fn func(addr, domain string) error) error {
	if err := x.refresh(ctx); err != nil {
		return err
	}
	key := strings.ToLower(list)
	x.mu.Lock()
	v := x.version
	members, ok := x.members[key]
	x.mu.Unlock()
	if ok {
		for _, a := range members {
			if err := fn(a, a[strings.LastIndexByte(a, '@')+1:]); err != nil {
				return err
			}
		}
		return nil
	}
	keep, small := []string{}, true
	err := x.store.EachMember(ctx, list, func(addr, domain string) error {
		if small {
			if len(keep) < memberCacheMax {
				keep = append(keep, addr)
			} else {
				small, keep = false, nil
			}
		}
		return fn(addr, domain)
	})
	if err != nil {
		return fmt.Errorf("members of %s: %w", list, err)
	}
	if small {
		x.mu.Lock()
		if v == x.version {
			x.members[key] = keep
		}
		x.mu.Unlock()
	}
	return nil
}

// countReceived counts the Received fields of a message's header.
func countReceived(msg []byte) int {
	return countFields(msg, "received:", -1)
}

// countFields counts header lines starting with prefix (lowercase, with
// the colon), case-insensitively, stopping at limit (-1: none).
func countFields(msg []byte, prefix string, limit int) int {
	n := 0
	for len(msg) > 0 && n != limit {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		if len(bytes.TrimRight(line, "\r")) == 0 {
			break // end of the header
		}
		if len(line) >= len(prefix) && bytes.EqualFold(line[:len(prefix)], []byte(prefix)) {
			n++
		}
	}
	return n
}

func bracket(ip string) string {
	if ip == "" {
		return "unknown"
	}
	return "[" + ip + "]"
}
