// Package dmarc finds the DMARC policy a poster's domain publishes, so a
// list can tell whether its copy of a post, sent with the author's From:
// but not the author's DKIM signature, would be rejected or quarantined
// by receivers (RFC 7489). It stands beside the pipeline: the expander
// asks it once per post and list, before it renders the copy, and acts
// on the answer (munge the From:, or wrap the post).
//
// Policy discovery follows RFC 7489 §6.6.3: the TXT records of
// _dmarc.DOMAIN for the From: domain; those that are not DMARC version 1
// are dropped; with none left, the same at the organizational domain
// (the registered domain under the Public Suffix List, §3.2, from
// golang.org/x/net/publicsuffix), whose sp= then applies, else its p=.
// More than one DMARC record, or none, is no policy. A record whose p=
// does not parse counts as p=none (§6.6.3 step 6). Records are parsed by
// go-msgauth's dmarc package; lookups go through the caller's resolver
// (package resolver in the server: the cache delivery uses).
//
// A lookup that fails for any reason but "no such name" is an error:
// the answer is unknown, and the caller must wait and ask again rather
// than guess (a wrong "none" gets the list's copy rejected everywhere;
// a wrong "reject" rewrites every From:).
package dmarc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	msgdmarc "github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"fanmail/resolver"
)

// Resolver looks up TXT records; *resolver.Resolver is one. A name that
// does not exist is an error wrapping resolver.ErrNXDomain; a name with
// no TXT records gives none and no error.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Policy is what a domain asks receivers to do with mail that fails
// DMARC.
type Policy string

const (
	PolicyNone       Policy = ""           // no DMARC record, or p=none
	PolicyQuarantine Policy = "quarantine" // p=quarantine
	PolicyReject     Policy = "reject"     // p=reject
)

// Strict reports whether receivers would refuse or quarantine mail that
// fails DMARC: the case in which a list must not send with the author's
// From: unchanged.
func (p Policy) Strict() bool { return p == PolicyReject || p == PolicyQuarantine }

// Result is the policy found for a domain and where it was found.
type Result struct {
	Policy Policy
	Record string // the _dmarc name whose record applied, "" if none
}

// Checker looks up DMARC policies through a resolver.
type Checker struct {
	res Resolver
}

// New returns a Checker that asks res.
func New(res Resolver) *Checker { return &Checker{res: res} }

// Lookup returns the DMARC policy that applies to mail whose From:
// domain is domain. An error means the answer is unknown (a DNS
// failure); it is never a guess.
func (c *Checker) Lookup(ctx context.Context, domain string) (Result, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if domain == "" || strings.HasPrefix(domain, "[") || !strings.Contains(domain, ".") {
		return Result{}, nil // an address literal or a bare name publishes no policy
	}
	rec, found, err := c.record(ctx, domain)
	if err != nil {
		return Result{}, err
	}
	if found {
		return policyOf(rec, "_dmarc."+domain, false), nil
	}
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil || org == domain {
		return Result{}, nil // domain is itself a public suffix, or the organizational domain
	}
	rec, found, err = c.record(ctx, org)
	if err != nil || !found {
		return Result{}, err
	}
	return policyOf(rec, "_dmarc."+org, true), nil
}

// record returns the one DMARC record published for domain (nil for a
// record that does not parse) and whether there is exactly one. found is
// true also when several are published, with rec nil: discovery stops
// there with no policy.
func (c *Checker) record(ctx context.Context, domain string) (rec *msgdmarc.Record, found bool, err error) {
	txts, err := c.res.LookupTXT(ctx, "_dmarc."+domain)
	if errors.Is(err, resolver.ErrNXDomain) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("DMARC policy of %s: %w", domain, err)
	}
	n := 0
	for _, txt := range txts {
		if !isDMARC1(txt) {
			continue
		}
		n++
		if r, err := msgdmarc.Parse(txt); err == nil {
			rec = r
		} else {
			rec = nil
		}
	}
	if n > 1 {
		return nil, true, nil
	}
	return rec, n == 1, nil
}

// isDMARC1 reports whether a TXT record is a DMARC version 1 record: it
// starts with the v tag, whose value is DMARC1 (RFC 7489 §6.4: v must be
// first; its value is compared exactly).
func isDMARC1(txt string) bool {
	tag, _, _ := strings.Cut(txt, ";")
	k, v, ok := strings.Cut(tag, "=")
	return ok && strings.TrimSpace(k) == "v" && strings.TrimSpace(v) == "DMARC1"
}

// policyOf returns the policy of a record, nil being one that did not
// parse (p=none). For the organizational domain's record sp= applies
// when it is given.
func policyOf(rec *msgdmarc.Record, name string, org bool) Result {
	if rec == nil {
		return Result{Record: name}
	}
	p := rec.Policy
	if org && rec.SubdomainPolicy != "" {
		p = rec.SubdomainPolicy
	}
	switch p {
	case msgdmarc.PolicyReject:
		return Result{Policy: PolicyReject, Record: name}
	case msgdmarc.PolicyQuarantine:
		return Result{Policy: PolicyQuarantine, Record: name}
	}
	return Result{Record: name}
}
