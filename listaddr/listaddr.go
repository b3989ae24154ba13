// Package listaddr is the one place that knows the addresses fanmail
// owns for a list LIST@DOMAIN, how to write them and how to tell them
// apart: the list itself; owner-LIST and LIST-owner (sendmail's and
// Mailman's spellings of the owner's address); LIST-bounces, the
// envelope sender of everything fanmail sends for the list, optionally
// with a member's address after a + (VERP: LIST-bounces+LOCAL=DOMAIN);
// LIST-request, LIST-subscribe and LIST-unsubscribe, where commands go
// by mail; and the addresses that carry a token: LIST-confirm+TOKEN (an
// address confirming a subscription request, or a moderator approving
// one) and LIST-approve+TOKEN and LIST-reject+TOKEN (a moderator's
// answer to a held post). It is a leaf beside the pipeline: ingress and
// the expander classify recipients with Parse, and whatever writes a
// list header or a notice builds addresses with Of, so the two never
// disagree.
//
// A new address is one more Role in the roles table. Parse only says
// what an address would be if LIST@DOMAIN is a list; whether it is, and
// whether a token is good, is the caller's question to the list store.
// Every role but Post is handled inside fanmail (Local): never looked
// up in the DNS, never sent out.
package listaddr

import (
	"strings"
)

// Role is what an address of a list is for.
type Role int

const (
	// Post is the list's own address: mail to it is a post.
	Post Role = iota
	// Owner is owner-LIST: errors and replies for the list's owner.
	Owner
	// Request is LIST-request: commands and help.
	Request
	// Approve is LIST-approve+TOKEN: a moderator approves a held post.
	Approve
	// Reject is LIST-reject+TOKEN: a moderator rejects a held post.
	Reject
	// Bounces is LIST-bounces, the envelope sender of the list's mail,
	// and LIST-bounces+LOCAL=DOMAIN, its VERP form for one member
	// (Token is then LOCAL=DOMAIN).
	Bounces
	// Confirm is LIST-confirm+TOKEN: a reply confirms a request.
	Confirm
	// Subscribe is LIST-subscribe: any message asks to subscribe.
	Subscribe
	// Unsubscribe is LIST-unsubscribe: any message asks to unsubscribe.
	Unsubscribe
)

// role describes how a Role is written: as a prefix or a suffix of the
// list's local part, and whether a +TOKEN follows. A role written two
// ways has two entries; Of writes the first.
type role struct {
	role     Role
	prefix   string // "owner-"
	suffix   string // "-request"
	token    bool   // a +TOKEN must follow
	optToken bool   // a +TOKEN may follow
	name     string
}

var roles = [...]role{
	{role: Owner, prefix: "owner-", name: "owner"},
	{role: Owner, suffix: "-owner", name: "owner"},
	{role: Request, suffix: "-request", name: "request"},
	{role: Approve, suffix: "-approve", token: true, name: "approve"},
	{role: Reject, suffix: "-reject", token: true, name: "reject"},
	{role: Bounces, suffix: "-bounces", optToken: true, name: "bounces"},
	{role: Confirm, suffix: "-confirm", token: true, name: "confirm"},
	{role: Subscribe, suffix: "-subscribe", name: "subscribe"},
	{role: Unsubscribe, suffix: "-unsubscribe", name: "unsubscribe"},
}

// Local reports whether mail to an address of this role is handled
// inside fanmail rather than distributed or forwarded as it is.
func (r Role) Local() bool { return r != Post }

func (r Role) String() string {
	for _, d := range roles {
		if d.role == r {
			return d.name
		}
	}
	return "post"
}

// Address is a recipient taken apart.
type Address struct {
	List  string // LIST@DOMAIN, the local part as written
	Role  Role
	Token string // for roles that carry one; as written
}

// Parse takes apart addr (local@domain, as address.Parse returns it)
// and returns every reading of it: the address as a post to a list of
// that name first, then, if its local part has the form of a role, that
// role of the list the rest names. The prefix and suffix are matched
// without regard to case, since some MTAs change the case of the
// addresses they pass on.
func Parse(addr string) []Address {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return nil
	}
	local, domain := addr[:at], addr[at:]
	out := []Address{{List: addr, Role: Post}}
	lower := strings.ToLower(local)
	for _, d := range roles {
		l, low := local, lower
		var token string
		if d.token || d.optToken {
			i := strings.IndexByte(l, '+')
			switch {
			case i == len(l)-1 || (i < 0 && d.token):
				continue
			case i >= 0:
				l, token, low = l[:i], l[i+1:], low[:i]
			}
		}
		switch {
		case d.prefix != "" && strings.HasPrefix(low, d.prefix) && len(l) > len(d.prefix):
			out = append(out, Address{List: l[len(d.prefix):] + domain, Role: d.role, Token: token})
		case d.suffix != "" && strings.HasSuffix(low, d.suffix) && len(l) > len(d.suffix):
			out = append(out, Address{List: l[:len(l)-len(d.suffix)] + domain, Role: d.role, Token: token})
		}
	}
	return out
}

// Of writes the address of list (LIST@DOMAIN) for role, with token for
// the roles that carry one.
func Of(list string, r Role, token string) string {
	at := strings.LastIndexByte(list, '@')
	if at < 0 || r == Post {
		return list
	}
	local, domain := list[:at], list[at:]
	for _, d := range roles {
		if d.role != r {
			continue
		}
		s := d.prefix + local + d.suffix
		if d.token || (d.optToken && token != "") {
			s += "+" + token
		}
		return s + domain
	}
	return list
}

// ListID is the list's identifier for List-Id (RFC 2919): the address
// with "@" replaced by ".".
func ListID(list string) string {
	at := strings.LastIndexByte(list, '@')
	if at < 0 {
		return list
	}
	return list[:at] + "." + list[at+1:]
}
