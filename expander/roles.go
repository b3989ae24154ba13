package expander

import (
	"context"
	"fmt"
	"strings"

	"fanmail/listaddr"
)

// Roles are the role addresses a mail domain must or should accept:
// postmaster (RFC 5321 §4.5.1: at every domain fanmail takes mail for,
// and the bare <postmaster>, which ingress looks up as "postmaster")
// and abuse (RFC 2142), at every domain
// that has lists. fanmail keeps no mailboxes, so each is forwarded to an
// address of the operator's, like a list's owner- address: with no list
// headers, and from the aliases' bounce address (bounce_address, by
// default MAILER-DAEMON@hostname), so a failure never bounces to
// whoever the poster claims to be. An empty address leaves
// its role refused, as any unknown recipient. Lists and aliases of the
// same name come first.
type Roles struct {
	Postmaster string // admin_address
	Abuse      string // abuse_address
	// ListDomains returns the domains that have lists; it is asked
	// again only when the list store changes.
	ListDomains func(ctx context.Context) ([]string, error)
}

// WithRoles makes x accept the role addresses in r.
func (x *Expander) WithRoles(r Roles) *Expander {
	x.roles = r
	return x
}

// role resolves rcpt if it is a role address with somewhere to go.
func (x *Expander) role(ctx context.Context, rcpt string) (target, bool, error) {
	local, domain, hasDomain := strings.Cut(rcpt, "@")
	var to string
	switch strings.ToLower(local) {
	case "postmaster":
		to = x.roles.Postmaster
	case "abuse":
		to = x.roles.Abuse
	}
	if to == "" || (!hasDomain && !strings.EqualFold(local, "postmaster")) {
		return target{}, false, nil
	}
	if hasDomain {
		ok, err := x.isListDomain(ctx, domain)
		if err != nil || !ok {
			return target{}, false, err
		}
	}
	canon := strings.ToLower(local)
	if hasDomain {
		canon += "@" + strings.ToLower(domain)
	}
	return target{list: canon, owner: to, admin: canon, roleAddr: true}, true, nil
}

// isListDomain reports whether domain has lists, from a set cached until
// the store changes.
func (x *Expander) isListDomain(ctx context.Context, domain string) (bool, error) {
	if x.roles.ListDomains == nil {
		return false, nil
	}
	set, err := cached(ctx, x, x.roleDomains, "", func() (map[string]bool, error) {
		domains, err := x.roles.ListDomains(ctx)
		if err != nil {
			return nil, fmt.Errorf("list domains: %w", err)
		}
		set := make(map[string]bool, len(domains))
		for _, d := range domains {
			set[strings.ToLower(d)] = true
		}
		return set, nil
	})
	return set[strings.ToLower(domain)], err
}

// Internal tells whether rcpt, a recipient of mail about to be
// delivered, is an address of a list that fanmail handles itself
// (listaddr.Role.Local: its owner, bounce, command and confirmation
// addresses) and which; delivery hands such mail to package listmail
// instead of the DNS, so mail fanmail sends itself, such as a DSN to a
// list's bounce address, never leaves the box. The recipient's domain
// is checked against the domains with lists first, from a cache, so the
// members of a fan-out cost a map lookup each.
func (x *Expander) Internal(ctx context.Context, rcpt string) (listaddr.Address, bool, error) {
	at := strings.LastIndexByte(rcpt, '@')
	if at < 0 {
		return listaddr.Address{}, false, nil
	}
	if ok, err := x.IsListDomain(ctx, rcpt[at+1:]); err != nil || !ok {
		return listaddr.Address{}, false, err
	}
	if len(listaddr.Parse(rcpt)) < 2 {
		return listaddr.Address{}, false, nil // no role's form
	}
	if x.aliases != nil {
		if _, ok := x.aliases.isAlias(rcpt); ok {
			return listaddr.Address{}, false, nil
		}
	}
	t, err := x.target(ctx, rcpt)
	if err != nil || t.list == "" || t.roleAddr || !t.role.Local() {
		return listaddr.Address{}, false, err
	}
	a := listaddr.Address{List: t.list, Role: t.role, Token: t.token}
	if t.role == listaddr.Bounces {
		if i := strings.IndexByte(rcpt[:at], '+'); i >= 0 {
			a.Token = rcpt[i+1 : at]
		}
	}
	return a, true, nil
}

// IsListDomain reports whether domain has lists, from a cache: whether
// mail to it may be for an address Internal takes.
func (x *Expander) IsListDomain(ctx context.Context, domain string) (bool, error) {
	return x.isListDomain(ctx, domain)
}
