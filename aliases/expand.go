package aliases

import (
	"context"
	"errors"
	"fanmail/listaddr"
	"fmt"
	"log/slog"
	"strings"

	"fanmail/address"
)

// MaxDepth is sendmail's MaxAliasRecursion: a target reached through
// more aliases than this fails with "aliasing/forwarding loop broken".
const MaxDepth = 10

// ListSource gives expansion access to mailing lists kept elsewhere
// (fanmail's SQLite lists store) without this package importing them.
type ListSource interface {
	// ListMembers reports whether addr (local@domain, domain lowercase)
	// is a list, and returns its members.
	ListMembers(ctx context.Context, addr string) (members []string, ok bool, err error)
}

// Expander expands addresses through a Table and, for names the table
// does not know, a ListSource. Its fields are read-only during Expand, so
// one Expander serves concurrent expansions.
type Expander struct {
	Table *Table
	Lists ListSource // nil: no lists
	// LocalDomains is class w (see ClassW): the domains whose addresses
	// are looked up as aliases. The first is the primary domain, which
	// qualifies owner addresses and the Value of local mailboxes.
	LocalDomains []string
	// AllowIncludeExec honours |program and /file targets found in
	// :include: files (sendmail and Postfix refuse them by default).
	AllowIncludeExec bool
	MaxDepth         int          // 0 = MaxDepth
	Log              *slog.Logger // nil: failures are only returned
}

// Final is one target the message goes to.
type Final struct {
	Kind Kind // Address, Program or File
	// Value is the address (as written; a local mailbox as
	// NAME@PRIMARY), the command line without "|", or the path.
	Value string
	// Local marks a local mailbox: a local name that is no alias and no
	// list, which sendmail hands to its local mailer.
	Local  bool
	Sender string // envelope sender (owner-NAME); "" = the post's own
	Pos    Pos    // where a Program or File target was written
}

// String prints a final target as `sendmail -bv` names it: a local
// mailbox by its bare name (user+detail), an address as written,
// |program, /file.
func (f Final) String() string {
	switch {
	case f.Kind == Program:
		return "|" + f.Value
	case f.Local:
		local := f.Value[:strings.LastIndexByte(f.Value, '@')]
		if strings.HasPrefix(local, `"`) {
			return local // quoted by address.Mailbox already
		}
		return quoteName(local)
	}
	return f.Value
}

// Failure is one error met during expansion; the rest of the expansion
// goes on. Subject names what it concerns: an address, FILE:LINE, or
// ":include:PATH".
type Failure struct {
	Subject string
	Msg     string
}

func (f Failure) String() string { return f.Subject + ": " + f.Msg }

// Node is one step of the expansion tree, for explaining a result.
type Node struct {
	Label    string // the target as met
	Note     string // what happened to it
	Sender   string // envelope sender of this branch ("" = the post's)
	Children []*Node
}

// Result is the outcome of expanding some addresses.
type Result struct {
	Targets  []Final   // deduplicated, in expansion order
	Failures []Failure // in the order met
	Tree     []*Node   // one root per input address
}

// Lines renders the targets as `fanmail aliases expand` prints them on
// stdout, one per line.
func (r Result) Lines() []string {
	out := make([]string, len(r.Targets))
	for i, t := range r.Targets {
		out[i] = t.String()
	}
	return out
}

// Expand expands addrs (addresses or bare local names, as given to
// RCPT TO or `sendmail -bv`). Only list-store errors, which mean the
// store is unusable, are returned as an error.
func (x *Expander) Expand(ctx context.Context, addrs ...string) (Result, error) {
	s := &state{x: x, ctx: ctx, seen: map[seenKey]bool{}, active: map[string]bool{}, done: map[string]bool{},
		unsafe: map[string]bool{}, failed: map[Failure]bool{}}
	for _, a := range addrs {
		n := &Node{Label: a}
		s.res.Tree = append(s.res.Tree, n)
		t, _, err := parseTarget(a)
		if errors.Is(err, errNoAddress) {
			err = errors.New("empty address")
		}
		if err != nil {
			n.Note = "error: " + err.Error()
			s.fail(a, err.Error())
			continue
		}
		s.target(n, t, 0, "", "", false)
		if s.err != nil {
			return s.res, s.err
		}
		// sendmail's testselfdestruct: an address that expanded to
		// nothing new, when nothing at all is deliverable or failed so
		// far, is reported as a loop.
		if len(s.res.Targets) == 0 && len(s.res.Failures) == 0 {
			n.Note = joinNote(n.Note, "error: aliasing/forwarding loop broken")
			s.fail(a, "aliasing/forwarding loop broken (it expands to nothing: every target is a loop back, a duplicate or an empty :include:)")
		}
	}
	return s.res, nil
}

type state struct {
	x      *Expander
	ctx    context.Context
	res    Result
	err    error
	seen   map[seenKey]bool // final targets produced
	active map[string]bool  // aliases and lists being expanded (ancestors)
	done   map[string]bool  // aliases, lists and includes already expanded
	unsafe map[string]bool  // :include: files writable by group or others
	failed map[Failure]bool // failures reported, each once
}

func (s *state) fail(subject, msg string) {
	f := Failure{subject, msg}
	if s.failed[f] {
		return
	}
	s.failed[f] = true
	s.res.Failures = append(s.res.Failures, f)
	if s.x.Log != nil {
		s.x.Log.Warn("alias expansion", "subject", subject, "error", msg)
	}
}

func (s *state) primary() string {
	if len(s.x.LocalDomains) > 0 {
		return lower(s.x.LocalDomains[0])
	}
	return "localhost"
}

func (s *state) isLocal(domain string) bool { return inClass(domain, s.x.LocalDomains) }

func (s *state) maxDepth() int {
	if s.x.MaxDepth > 0 {
		return s.x.MaxDepth
	}
	return MaxDepth
}

// tooDeep fails a target met below MaxDepth aliases.
func (s *state) tooDeep(n *Node, subject string, depth int) bool {
	if max := s.maxDepth(); depth > max {
		msg := fmt.Sprintf("aliasing/forwarding loop broken (%d aliases deep; %d max)", depth, max)
		n.Note = "error: " + msg
		s.fail(subject, msg)
		return true
	}
	return false
}

// target expands t, met at depth (number of aliases above it) in a
// branch whose envelope sender is sender. parent is the alias whose
// value t is ("" at the top and in :include: files and lists);
// fromInclude says t came from an :include: file.
func (s *state) target(n *Node, t Target, depth int, sender, parent string, fromInclude bool) {
	n.Sender = sender
	if s.tooDeep(n, t.String(), depth) {
		return
	}
	switch t.Kind {
	case Include:
		s.include(n, t, depth, sender, fromInclude)
	case Program, File:
		s.execTarget(n, t, depth, sender, fromInclude)
	case Address:
		s.address(n, t, depth, sender, parent)
	default:
		s.local(n, t, lower(t.Value), s.primary(), depth, sender, parent)
	}
}

// address expands local@domain: a remote address is final (or a list of
// the store), an address in class w is its local part.
func (s *state) address(n *Node, t Target, depth int, sender, parent string) {
	at := strings.LastIndexByte(t.Value, '@')
	local, domain := t.Value[:at], t.Value[at+1:]
	if s.isLocal(domain) {
		if strings.HasPrefix(local, `"`) {
			m, err := address.Parse(t.Value)
			if err != nil {
				n.Note = "error: " + err.Error()
				s.fail(t.Value, err.Error())
				return
			}
			local = m.Local
		}
		s.local(n, t, lower(local), lower(domain), depth, sender, parent)
		return
	}
	if !t.NoAlias && s.x.Lists != nil {
		// A list of the lists store has a domain of its own, seldom a
		// local one: any address may name one.
		addr := lower(local + "@" + domain)
		if s.active[addr] || s.done[addr] {
			n.Note = "duplicate suppressed"
			return
		}
		if s.tryList(n, addr, depth) {
			return
		}
	}
	s.emit(n, Final{Kind: Address, Value: t.Value, Sender: sender})
}

// local expands a lowercased local name met as t: an alias (tried as
// name, user+*, user), a list of the store, or a local mailbox.
func (s *state) local(n *Node, t Target, name, domain string, depth int, sender, parent string) {
	if !t.NoAlias {
		var buf [3]candidate
		for _, c := range candidates(buf[:0], name) {
			if c.extra > 0 && s.tooDeep(n, t.String(), depth+c.extra) {
				return
			}
			if e, ok := s.x.Table.lookup(c.key); ok {
				s.alias(n, t, c.key, e, depth+c.extra, sender, parent)
				return
			}
		}
		if s.x.Lists != nil {
			addr := address.Mailbox{Local: name, Domain: domain}.String()
			if s.active[addr] || s.done[addr] {
				n.Note = "duplicate suppressed"
				return
			}
			if s.tryList(n, addr, depth) {
				return
			}
		}
	}
	s.mailbox(n, t, name, sender, "")
}

// alias expands the entry e of key, met as t.
func (s *state) alias(n *Node, t Target, key string, e *Entry, depth int, sender, parent string) {
	switch {
	case s.active[key] && key == parent:
		// list: list, ...: sendmail's QSELFREF delivers to the local
		// mailbox of that name, which an alias name is not.
		s.mailbox(n, t, key, sender, "an alias that names itself is delivered to the local mailbox of that name, as in sendmail, and fanmail has none for an alias name: remove "+key+" from its own value")
		return
	case s.active[key]:
		// A longer loop (a: b, b: a) is broken here; sendmail reports it
		// only when nothing else is left (see Expand).
		n.Note = "loop: duplicate suppressed"
		return
	case s.done[key]:
		n.Note = "duplicate suppressed"
		return
	}
	s.done[key], s.active[key] = true, true
	defer func() { s.active[key] = false }()
	n.Note = "alias at " + e.Pos.String()
	sender = s.owner(key, sender)
	for _, c := range e.Targets {
		child := &Node{Label: c.String()}
		n.Children = append(n.Children, child)
		s.target(child, c, depth+1, sender, key, false)
		if s.err != nil {
			return
		}
	}
}

// mailbox delivers to the local mailbox name (user+detail, given as
// sendmail's local mailer gets it). A name the aliases files define has
// no mailbox: it is an error, as sendmail's "User unknown" for a name
// that is not in the passwd file. why explains a self-reference.
func (s *state) mailbox(n *Node, t Target, name, sender, why string) {
	user, detail, _ := strings.Cut(name, "+")
	if user == "" {
		user, detail = name, ""
	}
	if refusedAt, defined := s.x.Table.isName(user); defined {
		msg := "user unknown: "
		switch {
		case why != "":
			msg += why
		case refusedAt.File != "":
			msg += "its alias at " + refusedAt.String() + " was refused (see the error there), and fanmail has no local mailbox of that name"
		case t.NoAlias:
			msg += `\` + user + " names the local mailbox " + user + ", and fanmail has none for an alias name: drop the backslash"
		default:
			msg += user + " is an alias, and fanmail has no local mailbox of that name"
		}
		n.Note = "error: " + msg
		s.fail(t.String(), msg)
		return
	}
	if detail != "" && detail != "*" {
		user += "+" + detail
	}
	n.Note = joinNote(n.Note, "local mailbox")
	s.emit(n, Final{Kind: Address, Value: address.Mailbox{Local: user, Domain: s.primary()}.String(), Local: true, Sender: sender})
}

// tryList expands a list of the store if addr is one.
func (s *state) tryList(n *Node, addr string, depth int) bool {
	members, ok, err := s.x.Lists.ListMembers(s.ctx, addr)
	if err != nil {
		s.err = fmt.Errorf("look up list %s: %w", addr, err)
		return true
	}
	if !ok {
		return false
	}
	s.list(n, addr, members, depth)
	return true
}

// list expands a list of the list store, from the list's bounce address.
func (s *state) list(n *Node, addr string, members []string, depth int) {
	s.done[addr], s.active[addr] = true, true
	defer func() { s.active[addr] = false }()
	n.Note = fmt.Sprintf("list, %d members", len(members))
	sender := listaddr.Of(addr, listaddr.Bounces, "")
	for _, m := range members {
		child := &Node{Label: m}
		n.Children = append(n.Children, child)
		mb, err := address.Parse(m)
		if err != nil {
			child.Note = "error: " + err.Error()
			s.fail(addr, fmt.Sprintf("member %q: %v", m, err))
			continue
		}
		s.target(child, Target{Kind: Address, Value: mb.String()}, depth+1, sender, "", false)
		if s.err != nil {
			return
		}
	}
}

// owner returns the envelope sender for the expansion of alias name:
// owner-NAME's value when it is a single plain address, else owner-NAME
// itself, else the inherited sender (sendmail alias.c).
func (s *state) owner(name, inherited string) string {
	o := "owner-" + name
	if strings.HasPrefix(name, "owner-") {
		o = "owner-owner"
	}
	e, ok := s.x.Table.lookup(o)
	if !ok {
		return inherited
	}
	if len(e.Targets) == 1 {
		t := e.Targets[0]
		if (t.Kind == Local || t.Kind == Address) && !t.NoAlias && !strings.ContainsAny(t.Value, `,:/|"`) {
			if t.Kind == Local {
				return lower(t.Value) + "@" + s.primary()
			}
			return t.Value
		}
	}
	return o + "@" + s.primary()
}

// seenKey identifies a final target: local parts compare exactly (a
// local mailbox is lowercase already), domains without regard to case.
type seenKey struct {
	kind  Kind
	value string
}

// emit adds a final target unless it was produced already.
func (s *state) emit(n *Node, f Final) {
	key := seenKey{f.Kind, f.Value}
	if f.Kind == Address {
		at := strings.LastIndexByte(f.Value, '@')
		if d := f.Value[at+1:]; lower(d) != d {
			key.value = f.Value[:at+1] + lower(d)
		}
	}
	if s.seen[key] {
		n.Note = joinNote(n.Note, "duplicate suppressed")
		return
	}
	s.seen[key] = true
	n.Note = joinNote(n.Note, "deliver")
	s.res.Targets = append(s.res.Targets, f)
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// lower is strings.ToLower without allocating for lowercase ASCII input.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' || c >= 0x80 {
			return strings.ToLower(s)
		}
	}
	return s
}
