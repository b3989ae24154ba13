package aliases

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
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
	// LocalDomains are the domains whose addresses are looked up as
	// aliases; the first is the primary domain, which qualifies local
	// names (name becomes name@PRIMARY) and owner addresses.
	LocalDomains []string
	// AllowIncludeExec honours |program and /file targets found in
	// :include: files (sendmail and Postfix refuse them by default).
	AllowIncludeExec bool
	MaxDepth         int          // 0 = MaxDepth
	Log              *slog.Logger // nil: failures are only returned
}

// Final is one target the message goes to.
type Final struct {
	Kind   Kind   // Address, Program or File
	Value  string // address, command line (without "|") or path
	Sender string // envelope sender (owner-NAME); "" = the post's own
	Pos    Pos    // where a Program or File target was written
}

// String prints a final target like `sendmail -bv` names it.
func (f Final) String() string {
	if f.Kind == Program {
		return "|" + f.Value
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

// Expand expands addrs (addresses or bare local names, as given to
// RCPT TO or `sendmail -bv`). Only list-store errors, which mean the
// store is unusable, are returned as an error.
func (x *Expander) Expand(ctx context.Context, addrs ...string) (Result, error) {
	s := &state{x: x, ctx: ctx, seen: map[string]bool{}, active: map[string]bool{}, done: map[string]bool{}, unsafe: map[string]bool{}}
	for _, a := range addrs {
		n := &Node{Label: a}
		s.res.Tree = append(s.res.Tree, n)
		t, err := parseTarget(strings.TrimSpace(a))
		if err != nil {
			n.Note = "error: " + err.Error()
			s.fail(a, err.Error())
			continue
		}
		s.target(n, t, 0, "", false)
		if s.err != nil {
			return s.res, s.err
		}
	}
	return s.res, nil
}

type state struct {
	x      *Expander
	ctx    context.Context
	res    Result
	err    error
	seen   map[string]bool // final targets produced
	active map[string]bool // aliases and lists being expanded (ancestors)
	done   map[string]bool // aliases, lists and includes already expanded
	unsafe map[string]bool // :include: files writable by group or others
}

func (s *state) fail(subject, msg string) {
	s.res.Failures = append(s.res.Failures, Failure{subject, msg})
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

func (s *state) isLocal(domain string) bool {
	for _, d := range s.x.LocalDomains {
		if strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}

// target expands t, met at depth (number of aliases above it) in a
// branch whose envelope sender is sender. fromInclude says t came from
// an :include: file.
func (s *state) target(n *Node, t Target, depth int, sender string, fromInclude bool) {
	n.Sender = sender
	if max := s.maxDepth(); depth > max {
		msg := fmt.Sprintf("aliasing/forwarding loop broken (%d aliases deep; %d max)", depth, max)
		n.Note = "error: " + msg
		s.fail(t.String(), msg)
		return
	}
	switch t.Kind {
	case Include:
		s.include(n, t, depth, sender, fromInclude)
	case Program, File:
		s.execTarget(n, t, depth, sender, fromInclude)
	default:
		s.address(n, t, depth, sender)
	}
}

func (s *state) maxDepth() int {
	if s.x.MaxDepth > 0 {
		return s.x.MaxDepth
	}
	return MaxDepth
}

// address expands a local name or an address.
func (s *state) address(n *Node, t Target, depth int, sender string) {
	name, domain, local := t.Value, s.primary(), true
	if t.Kind == Address {
		// Value is normalized: the domain follows the last @, and only a
		// quoted local part needs parsing again to be unquoted.
		at := strings.LastIndexByte(t.Value, '@')
		name, domain = t.Value[:at], t.Value[at+1:]
		local = s.isLocal(domain)
		if local && strings.HasPrefix(name, `"`) {
			m, err := address.Parse(t.Value)
			if err != nil {
				n.Note = "error: " + err.Error()
				s.fail(t.Value, err.Error())
				return
			}
			name = m.Local
		}
	}
	final := t.Value
	if t.Kind == Local {
		final = address.Mailbox{Local: name, Domain: domain}.String()
	}
	if !local && !t.NoAlias && s.x.Lists != nil {
		// A list of the lists store has a domain of its own, seldom a
		// local one: any address may name one.
		addr := lower(final)
		if s.active[addr] || s.done[addr] {
			n.Note = "duplicate suppressed"
			return
		}
		members, ok, err := s.x.Lists.ListMembers(s.ctx, addr)
		if err != nil {
			s.err = fmt.Errorf("look up list %s: %w", addr, err)
			return
		}
		if ok {
			s.list(n, addr, addr, members, depth)
			return
		}
	}
	if !local || t.NoAlias {
		s.emit(n, Final{Kind: Address, Value: final, Sender: sender})
		return
	}
	key := lower(name)
	if s.active[key] {
		// sendmail's QSELFREF: a name inside its own expansion is
		// delivered to the local mailbox instead of expanded again.
		n.Note = "self-reference: local mailbox"
		s.emit(n, Final{Kind: Address, Value: final, Sender: sender})
		return
	}
	if s.done[key] {
		n.Note = "duplicate suppressed"
		return
	}
	if e, ok := s.x.Table.lookup(key); ok {
		s.done[key], s.active[key] = true, true
		n.Note = "alias at " + e.Pos.String()
		sender = s.owner(key, sender)
		for _, c := range e.Targets {
			child := &Node{Label: c.String()}
			n.Children = append(n.Children, child)
			s.target(child, c, depth+1, sender, false)
		}
		s.active[key] = false
		return
	}
	if s.x.Lists != nil {
		addr := lower(address.Mailbox{Local: name, Domain: domain}.String())
		members, ok, err := s.x.Lists.ListMembers(s.ctx, addr)
		if err != nil {
			s.err = fmt.Errorf("look up list %s: %w", addr, err)
			return
		}
		if ok {
			s.list(n, key, addr, members, depth)
			return
		}
	}
	s.emit(n, Final{Kind: Address, Value: final, Sender: sender})
}

// list expands a list of the list store; its owner is owner-LIST.
func (s *state) list(n *Node, key, addr string, members []string, depth int) {
	s.done[key], s.active[key] = true, true
	defer func() { s.active[key] = false }()
	n.Note = fmt.Sprintf("list, %d members", len(members))
	sender := "owner-" + addr
	for _, m := range members {
		child := &Node{Label: m}
		n.Children = append(n.Children, child)
		mb, err := address.Parse(m)
		if err != nil {
			child.Note = "error: " + err.Error()
			s.fail(addr, fmt.Sprintf("member %q: %v", m, err))
			continue
		}
		s.target(child, Target{Kind: Address, Value: mb.String()}, depth+1, sender, false)
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
				return t.Value + "@" + s.primary()
			}
			return t.Value
		}
	}
	return o + "@" + s.primary()
}

// include expands an :include: file, read now so edits take effect
// without a reload (as in sendmail).
func (s *state) include(n *Node, t Target, depth int, sender string, fromInclude bool) {
	subject := ":include:" + t.Value
	if depth == 0 {
		n.Note = "error: cannot mail directly to :include:s"
		s.fail(subject, "cannot mail directly to :include:s")
		return
	}
	path := t.Value
	if !filepath.IsAbs(path) && t.Pos.File != "" {
		path = filepath.Join(filepath.Dir(t.Pos.File), path)
	}
	if s.done[subject] {
		n.Note = "duplicate suppressed"
		return
	}
	s.done[subject] = true
	f, err := os.Open(path)
	if err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && !fi.Mode().IsRegular() {
			err = fmt.Errorf("not a regular file")
		}
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		msg := fmt.Sprintf("cannot open %s: %v", path, err)
		n.Note = "error: " + msg
		s.fail(subject, msg)
		if f != nil {
			f.Close()
		}
		return
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o022 != 0 {
		s.unsafe[path] = true // its programs and files are refused
	}
	targets, probs := ParseInclude(f, path)
	f.Close()
	for _, p := range probs {
		s.fail(p.Pos.String(), p.Msg)
	}
	n.Note = fmt.Sprintf("include, %d targets", len(targets))
	for _, c := range targets {
		child := &Node{Label: c.String()}
		n.Children = append(n.Children, child)
		s.target(child, c, depth+1, sender, true)
	}
}

// execTarget admits a |program or /file target where it is safe.
func (s *state) execTarget(n *Node, t Target, depth int, sender string, fromInclude bool) {
	what := "programs"
	if t.Kind == File {
		what = "files"
	}
	var refuse string
	switch {
	case depth == 0:
		refuse = "cannot mail directly to " + what
	case fromInclude && !s.x.AllowIncludeExec:
		refuse = what + " in :include: files are refused (list them in the aliases file, or enable them for includes in the config)"
	case s.unsafe[t.Pos.File] || s.x.Table != nil && s.x.Table.unsafe[t.Pos.File]:
		refuse = what + " from a file writable by group or others are refused (chmod go-w " + t.Pos.File + ")"
	}
	if refuse != "" {
		subject, msg := t.String(), refuse
		if t.Pos.File != "" {
			subject, msg = t.Pos.String(), t.String()+": "+refuse
		}
		n.Note = "error: " + refuse
		s.fail(subject, msg)
		return
	}
	s.emit(n, Final{Kind: t.Kind, Value: t.Value, Sender: sender, Pos: t.Pos})
}

// emit adds a final target unless it was produced already.
func (s *state) emit(n *Node, f Final) {
	key := f.Kind.String() + ":" + f.Value
	if f.Kind == Address {
		key = addrKey(f.Value, s.isLocal)
	}
	if s.seen[key] {
		n.Note = joinNote(n.Note, "duplicate suppressed")
		return
	}
	s.seen[key] = true
	n.Note = joinNote(n.Note, "deliver")
	s.res.Targets = append(s.res.Targets, f)
}

// addrKey is the duplicate key of an address: local addresses compare
// case-insensitively (as alias names do), remote local parts exactly.
func addrKey(a string, isLocal func(string) bool) string {
	at := strings.LastIndexByte(a, '@')
	if at < 0 || isLocal(a[at+1:]) {
		return "address:" + lower(a)
	}
	return "address:" + a[:at+1] + lower(a[at+1:])
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

// Lines renders the result as `fanmail aliases expand` prints it: one
// final target per line, then one "ERROR: SUBJECT: MESSAGE" line per
// failure.
func (r Result) Lines() []string {
	out := make([]string, 0, len(r.Targets)+len(r.Failures))
	for _, t := range r.Targets {
		out = append(out, t.String())
	}
	for _, f := range r.Failures {
		out = append(out, "ERROR: "+f.String())
	}
	return out
}
