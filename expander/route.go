package expander

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"fanmail/envelope"
	"fanmail/queuegroups"
)

// DefaultRecipientsPerEnvelope is a queue group's r= when none is set:
// sendmail's usual 100.
const DefaultRecipientsPerEnvelope = 100

// RouterConfig is sendmail's queuegroup ruleset and each group's r=: the
// ordered domain patterns that choose a destination's queue group, and
// how many recipients one envelope of each group holds.
type RouterConfig struct {
	// RecipientsPerEnvelope is each queue group's r=, by group name; it
	// names every group rules may use. A group without an entry gets
	// DefaultRecipientsPerEnvelope.
	RecipientsPerEnvelope map[string]int
	// Rules are tried in order and the first whose pattern matches wins;
	// no match means queuegroups.DefaultGroup.
	Rules []Rule
}

// Rule sends destination domains matching any pattern to Group. A pattern
// is a domain ("example.com", that domain only) or "*.example.com" (every
// subdomain, not the domain itself).
type Rule struct {
	Patterns []string
	Group    string
}

// Router picks a destination domain's queue group and envelope size and
// cuts recipients into envelopes. It never does DNS lookups.
type Router struct {
	exact    map[string]int // domain → index of the first rule naming it
	suffixes []suffixRule   // "*.d" patterns in rule order
	rules    []Rule
	perEnv   map[string]int
}

type suffixRule struct {
	suffix string // ".example.com"
	rule   int
}

// NewRouter checks cfg and builds its routing table. Every problem is
// reported, in rule order.
func NewRouter(cfg RouterConfig) (*Router, error) {
	var errs []error
	for g, n := range cfg.RecipientsPerEnvelope {
		if n < 0 {
			errs = append(errs, fmt.Errorf("queue group %s: recipients per envelope %d must not be negative", g, n))
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	r := &Router{exact: map[string]int{}, rules: cfg.Rules, perEnv: map[string]int{}}
	for i, rule := range cfg.Rules {
		if _, ok := cfg.RecipientsPerEnvelope[rule.Group]; !ok {
			errs = append(errs, fmt.Errorf("rule for %s names queue group %q, which is not declared", strings.Join(rule.Patterns, ", "), rule.Group))
		}
		if rule.Group == queuegroups.ControlGroup {
			errs = append(errs, fmt.Errorf("rule for %s: the %s group is for mail fanmail generates, not for domains", strings.Join(rule.Patterns, ", "), queuegroups.ControlGroup))
		}
		for _, p := range rule.Patterns {
			if err := checkPattern(p); err != nil {
				errs = append(errs, err)
				continue
			}
			if s, ok := strings.CutPrefix(p, "*."); ok {
				r.suffixes = append(r.suffixes, suffixRule{suffix: "." + s, rule: i})
			} else if _, dup := r.exact[p]; !dup {
				r.exact[p] = i
			}
		}
	}
	for g, n := range cfg.RecipientsPerEnvelope {
		r.perEnv[g] = n
	}
	return r, errors.Join(errs...)
}

func checkPattern(p string) error {
	d := strings.TrimPrefix(p, "*.")
	if d == "" || strings.ContainsAny(d, "*@ \t") || d != strings.ToLower(d) || strings.HasPrefix(d, ".") {
		return fmt.Errorf("domain pattern %q: use a lowercase domain (example.com) or *.example.com for its subdomains", p)
	}
	return nil
}

// Route returns the group for domain (lowercase) and that group's r=.
// Rules are tried in order; the first whose pattern matches wins.
func (r *Router) Route(domain string) (group string, perEnvelope int) {
	best := len(r.rules)
	if i, ok := r.exact[domain]; ok {
		best = i
	}
	for _, s := range r.suffixes {
		if s.rule >= best {
			break
		}
		if strings.HasSuffix(domain, s.suffix) {
			best = s.rule
			break
		}
	}
	group = queuegroups.DefaultGroup
	if best < len(r.rules) {
		group = r.rules[best].Group
	}
	if n := r.perEnv[group]; n > 0 {
		return group, n
	}
	return group, DefaultRecipientsPerEnvelope
}

// Split deduplicates recipients (domains compared case-insensitively),
// groups them by domain, routes each domain to its queue group, and cuts
// each domain's share into envelopes from sender of at most that group's
// r= recipients. Domains and recipients come out sorted, so the same
// input always yields the same envelopes.
func (r *Router) Split(sender string, rcpts []string) []envelope.Envelope {
	byDomain := make(map[string][]string)
	seen := make(map[string]struct{}, len(rcpts))
	for _, addr := range rcpts {
		at := strings.LastIndexByte(addr, '@')
		if at < 0 {
			continue
		}
		domain := strings.ToLower(addr[at+1:])
		norm := addr[:at+1] + domain
		if _, dup := seen[norm]; dup {
			continue
		}
		seen[norm] = struct{}{}
		byDomain[domain] = append(byDomain[domain], norm)
	}
	domains := make([]string, 0, len(byDomain))
	for d := range byDomain {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	var envs []envelope.Envelope
	for _, d := range domains {
		members := byDomain[d]
		sort.Strings(members)
		group, n := r.Route(d)
		for len(members) > 0 {
			k := min(n, len(members))
			envs = append(envs, envelope.Envelope{Sender: sender, Group: group, Domain: d, Recipients: members[:k:k]})
			members = members[k:]
		}
	}
	return envs
}

// Cutter cuts recipients that arrive grouped by domain, each domain's
// in order (as the list store yields a list's members), into the
// envelopes Split would make of them, passing each to emit as soon as it
// is full. It holds one envelope's recipients at a time, and reuses
// them: emit must not keep the Recipients slice.
type Cutter struct {
	r      *Router
	sender string
	emit   func(envelope.Envelope) error
	domain string
	group  string
	n      int
	buf    []string
}

// Cutter returns a Cutter of envelopes from sender.
func (r *Router) Cutter(sender string, emit func(envelope.Envelope) error) *Cutter {
	return &Cutter{r: r, sender: sender, emit: emit}
}

// Add takes the next recipient, addr at its lowercase domain.
func (c *Cutter) Add(addr, domain string) error {
	if domain != c.domain || c.buf == nil {
		if err := c.Flush(); err != nil {
			return err
		}
		c.domain = domain
		c.group, c.n = c.r.Route(domain)
		if c.buf == nil {
			// Grown by append up to n: most posts go to small lists,
			// and a buffer of r strings each would be most of what
			// accepting one costs in allocation.
			c.buf = make([]string, 0, min(c.n, 8))
		}
	}
	c.buf = append(c.buf, addr)
	if len(c.buf) >= c.n {
		return c.Flush()
	}
	return nil
}

// Flush emits what is gathered; call it after the last Add.
func (c *Cutter) Flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	e := envelope.Envelope{Sender: c.sender, Group: c.group, Domain: c.domain, Recipients: c.buf}
	c.buf = c.buf[:0]
	return c.emit(e)
}
