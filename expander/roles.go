package expander

import (
	"context"
	"fmt"
	"strings"
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
