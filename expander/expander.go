// Package expander is the second stage of the pipeline: it turns one
// accepted post and its recipients (lists, their owner- and -request
// addresses, aliases) into queue parts, one per list or envelope sender,
// each with its headers and its recipients cut into envelopes.
//
// It owns the routing that sendmail calls the queuegroup ruleset
// (route.go): a Router sends each destination domain to a queue group by
// ordered domain patterns and cuts that domain's recipients into
// envelopes of at most the group's r=. The queue then stores envelopes
// already routed. The expander performs no DNS lookups (sendmail's
// nocanonify): addresses are used as written, with lowercase domains.
package expander

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"

	"fanmail/envelope"
	"fanmail/lists"
	"fanmail/queuegroups"
)

// Store is what the expander needs of the list store.
type Store interface {
	GetList(ctx context.Context, address string) (lists.List, error)
	Members(ctx context.Context, list string) ([]string, error)
	EachMember(ctx context.Context, list string, fn func(addr, domain string) error) error
	Version(ctx context.Context) (int64, error)
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
	aliases  *Aliases // nil: no aliases files
	roles    Roles    // postmaster and abuse (roles.go)

	mu          sync.Mutex
	version     int64
	checked     time.Time                  // when version was last read from the store
	members     map[string][]string        // list → members of lists up to memberCacheMax, valid while version holds
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
	return &Expander{store: store, hostname: hostname, router: router,
		members: map[string][]string{}, addresses: map[string]target{}, unknown: newUnknownCache(maxUnknownCached),
		roleDomains: map[string]map[string]bool{}}
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
// served, and before lists, as sendmail consults aliases first), lists (case-insensitively) and
// their administrative addresses owner-LIST and LIST-request, which
// reach the list's owner (sendmail's owner- and -request conventions), so
// bounces sent to a list's bounce address reach a person.
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
	if t.list == "" {
		return "", ErrUnknownRecipient
	}
	if t.owner != "" {
		return t.admin, nil
	}
	return t.list, nil
}

// target is what an address names: a list, or with owner set, one of a
// list's administrative addresses.
type target struct {
	list  string // the list's address; "" if the address is nothing here
	owner string // the owner to forward to, for owner-LIST and LIST-request
	admin string // the administrative address, as canonical as the list's
	role  bool   // postmaster or abuse (roles.go): forwarded from the aliases' bounce address
}

// target resolves rcpt, from the caches while the store is unchanged.
// What exists is cached without bound, as the store bounds it; what does
// not is anything a client cares to send, so those answers go to a
// bounded cache (cache.go).
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
		if t.list == "" {
			x.unknown.add(key)
		} else {
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

func (x *Expander) resolve(ctx context.Context, rcpt string) (target, error) {
	l, err := x.store.GetList(ctx, rcpt)
	switch {
	case err == nil:
		return target{list: l.Address}, nil
	case !errors.Is(err, lists.ErrNoList):
		return target{}, fmt.Errorf("look up %s: %w", rcpt, err)
	}
	if t, ok, err := x.role(ctx, rcpt); ok || err != nil {
		return t, err
	}
	local, domain, ok := strings.Cut(rcpt, "@")
	if !ok {
		return target{}, nil
	}
	lower := strings.ToLower(local)
	var base string
	switch {
	case strings.HasPrefix(lower, "owner-") && len(local) > len("owner-"):
		base = local[len("owner-"):]
	case strings.HasSuffix(lower, "-request") && len(local) > len("-request"):
		base = local[:len(local)-len("-request")]
	default:
		return target{}, nil
	}
	l, err = x.store.GetList(ctx, base+"@"+domain)
	switch {
	case errors.Is(err, lists.ErrNoList):
		return target{}, nil
	case err != nil:
		return target{}, fmt.Errorf("look up %s: %w", rcpt, err)
	case l.Owner == "":
		return target{}, nil // nobody to forward to: as if it did not exist
	}
	lLocal, lDomain, _ := strings.Cut(l.Address, "@")
	admin := "owner-" + lLocal + "@" + lDomain
	if strings.HasSuffix(lower, "-request") {
		admin = lLocal + "-request@" + lDomain
	}
	return target{list: l.Address, owner: l.Owner, admin: admin}, nil
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
		clear(x.addresses)
		x.unknown.reset()
		clear(x.roleDomains)
	}
	return nil
}

// Post is one accepted message as ingress hands it over.
type Post struct {
	ID         string
	Received   time.Time
	Sender     string        // the poster's MAIL FROM, for the log only: bounces go to the list
	Helo       string        // client's EHLO name
	RemoteAddr string        // client's IP address
	TLS        string        // the session's TLS ("version=TLS1.3 cipher=..."), "" in clear text
	UTF8       bool          // sent with SMTPUTF8 (RFC 6531)
	Lists      []string      // canonical recipients from Lookup: lists and their owner- and -request addresses
	Body       envelope.Body // header and body as received, CRLF; only the header is read
}

// Expand builds the queue message for p: the body is kept once, and each
// list becomes a part with its own sender, headers and envelopes.
func (x *Expander) Expand(ctx context.Context, p Post) (*queuegroups.Message, error) {
	header, err := readHeader(p.Body, MaxHeaderSize)
	if err != nil {
		return nil, err
	}
	if n := countReceived(header); n > maxHops {
		return nil, fmt.Errorf("%d Received headers: %w", n, ErrLoop)
	}
	body := p.Body
	newHeader, listIDs, changed := stripListID(header)
	if changed {
		body = envelope.WithHeader(newHeader, p.Body, int64(len(header)))
	}
	m := &queuegroups.Message{ID: p.ID, Received: p.Received, Body: body}
	var aliased []string
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
		if t.owner != "" {
			// Mail for the owner gets no list headers, and goes out
			// from the list's bounce address, so a failure never
			// bounces to whoever the poster claims to be.
			var prefix bytes.Buffer
			x.received(&prefix, p, t.admin)
			own := BounceAddress(t.list)
			if t.role {
				own = x.aliasBounce()
			}
			m.Parts = append(m.Parts, queuegroups.Part{Prefix: prefix.Bytes(),
				Envelopes: x.router.Split(forwardSender(p.Sender, own), []string{t.owner})})
			continue
		}
		list := t.list
		if list == "" {
			return nil, fmt.Errorf("%s: %w", rcpt, ErrUnknownRecipient)
		}
		local, domain, _ := strings.Cut(list, "@")
		listID := local + "." + domain
		for _, id := range listIDs {
			if strings.EqualFold(id, listID) {
				return nil, fmt.Errorf("%s: post already carries this list's List-Id: %w", list, ErrLoop)
			}
		}
		var prefix bytes.Buffer
		x.received(&prefix, p, list)
		fmt.Fprintf(&prefix, "List-Id: <%s>\r\n", listID)
		// The members are streamed from the store while the queue writes
		// the envelopes, so a list of any size is never held whole.
		m.Parts = append(m.Parts, queuegroups.Part{
			Prefix: prefix.Bytes(),
			Stream: func(yield func(envelope.Envelope) error) error {
				c := x.router.Cutter(BounceAddress(list), yield)
				if err := x.eachMember(ctx, list, c.Add); err != nil {
					return err
				}
				return c.Flush()
			},
		})
	}
	if len(aliased) > 0 {
		parts, err := x.expandAliases(ctx, p, aliased)
		if err != nil {
			return nil, err
		}
		m.Parts = append(m.Parts, parts...)
	}
	return m, nil
}

// expandAliases expands the aliases a post is addressed to, together (so
// a target reached twice gets the post once), into one part per envelope
// sender: owner-NAME where the aliases file has one, else the aliases'
// bounce address, never the poster's (no backscatter).
// |program and /file targets get envelopes of their own in the local
// pseudo-domain, one target each.
func (x *Expander) expandAliases(ctx context.Context, p Post, rcpts []string) ([]queuegroups.Part, error) {
	res, err := x.aliases.expander(listSource{x}).Expand(ctx, rcpts...)
	if err != nil {
		return nil, fmt.Errorf("expand aliases: %w", err)
	}
	if len(res.Targets) == 0 {
		return nil, fmt.Errorf("%s: %w (%d errors)", strings.Join(rcpts, ", "), ErrNoTargets, len(res.Failures))
	}
	var prefix bytes.Buffer
	x.received(&prefix, p, rcpts[0])
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
			parts = append(parts, queuegroups.Part{Prefix: prefix.Bytes(), Envelopes: envs})
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
	fmt.Fprintf(w, "Received: from %s (%s)\r\n\tby %s (fanmail) with %s id %s%s\r\n\tfor <%s>; %s\r\n",
		p.Helo, bracket(p.RemoteAddr), x.hostname, proto, p.ID, tlsNote, rcpt, p.Received.Format(time.RFC1123Z))
}

// BounceAddress is sendmail's owner-LIST convention: delivery errors for a
// list's mail go to its owner, never to the poster.
func BounceAddress(list string) string { return "owner-" + list }

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

// hasField reports whether the header has a field named by prefix.
func hasField(msg []byte, prefix string) bool {
	return countFields(msg, prefix, 1) > 0
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

// stripListID removes List-Id fields from the post's header (our part adds
// the list's own) and returns the ids it found; the header comes back
// unchanged (and changed false) when it has none. A header that does not
// parse is left untouched: fanmail relays what it was given.
func stripListID(header []byte) (_ []byte, ids []string, changed bool) {
	body := header
	if !hasField(body, "list-id:") {
		return body, nil, false // the usual case, without parsing the header
	}
	br := bufio.NewReader(bytes.NewReader(body))
	h, err := textproto.ReadHeader(br)
	if err != nil || !h.Has("List-Id") {
		return body, nil, false
	}
	for _, v := range h.Values("List-Id") {
		if i, j := strings.IndexByte(v, '<'), strings.LastIndexByte(v, '>'); i >= 0 && j > i {
			ids = append(ids, v[i+1:j])
		}
	}
	h.Del("List-Id")
	var out bytes.Buffer
	out.Grow(len(body))
	if err := textproto.WriteHeader(&out, h); err != nil {
		return body, ids, false
	}
	if _, err := out.ReadFrom(br); err != nil {
		return body, ids, false
	}
	return out.Bytes(), ids, true
}

func bracket(ip string) string {
	if ip == "" {
		return "unknown"
	}
	return "[" + ip + "]"
}
