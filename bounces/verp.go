package bounces

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"fanmail/address"
	"fanmail/dsn"
)

// VERP (variable envelope return paths, as qmail and Mailman use them):
// each member's copy of a post goes out with its own envelope sender,
//
//	LIST-bounces+LOCAL=DOMAIN@LISTDOMAIN
//
// for the member LOCAL@DOMAIN of the list LIST@LISTDOMAIN, so a bounce
// names its member in the address it is delivered to, whatever its body
// looks like. The member's "@" becomes "=".
//
// Round trip. A domain never contains "=", so the member's address is
// split at the last "=": a member local part containing "=" or "+"
// ("a=b+c@example.org" → "list-bounces+a=b+c=example.org@...") comes
// back unchanged. The list part ends at the first "-bounces+", so a list
// whose local part itself contains "-bounces+" cannot be VERP-encoded
// (EncodeVERP refuses it). A member local part that needs quoting makes a
// quoted VERP local part, which address.Parse unquotes again. The fixed
// "-bounces" and the domains are matched without regard to case, since
// some MTAs change the case of the addresses they return to; the list's
// and the member's local parts are returned as written.
//
// Length. RFC 5321 §4.5.3.1.1 lets a receiver refuse local parts over 64
// octets, and a VERP local part is the list's and the member's together.
// EncodeVERP returns ErrVERPTooLong rather than an address some MTA will
// refuse; the caller then sends that member's copy from the plain
// BounceAddress and relies on the parser.

// Errors of the VERP functions.
var (
	ErrVERPTooLong      = errors.New("VERP address longer than 64 octets in the local part")
	ErrNotBounceAddress = errors.New("not a list bounce address")
	ErrMalformedVERP    = errors.New("malformed VERP bounce address")
	errBouncesInList    = errors.New(`list local part contains "-bounces+"`)
)

const (
	bouncesSuffix        = "-bounces"
	bouncesVERPSeparator = "-bounces+"
	verpAtReplacement    = "="
	maxLocal             = 64 // RFC 5321 §4.5.3.1.1
)

// BounceAddress is the envelope sender of a list's posts without VERP:
// LIST-bounces@LISTDOMAIN.
func BounceAddress(list string) (string, error) {
	l, err := address.Parse(list)
	if err != nil {
		return "", fmt.Errorf("list address %q: %w", list, err)
	}
	b := address.Mailbox{Local: l.Local + bouncesSuffix, Domain: l.Domain}
	if _, err := address.Parse(b.String()); err != nil {
		return "", fmt.Errorf("bounce address of %s: %w", list, err)
	}
	return b.String(), nil
}

// EncodeVERP returns the VERP bounce address of member on list.
func EncodeVERP(list, member string) (string, error) {
	l, err := address.Parse(list)
	if err != nil {
		return "", fmt.Errorf("list address %q: %w", list, err)
	}
	if strings.Contains(strings.ToLower(l.Local), bouncesVERPSeparator) {
		return "", fmt.Errorf("list %s: %w", list, errBouncesInList)
	}
	m, err := address.Parse(member)
	if err != nil {
		return "", fmt.Errorf("member address %q: %w", member, err)
	}
	v := address.Mailbox{Local: l.Local + bouncesVERPSeparator + m.Local + verpAtReplacement + m.Domain, Domain: l.Domain}
	s := v.String()
	if len(s)-len(v.Domain)-1 > maxLocal { // the local part as written, quotes included
		return "", fmt.Errorf("list %s, member %s: %w", list, member, ErrVERPTooLong)
	}
	if _, err := address.Parse(s); err != nil {
		return "", fmt.Errorf("list %s, member %s: %w", list, member, err)
	}
	return s, nil
}

// ParseBounceAddress reads an address mail to a list's bounces arrives
// at: LIST-bounces@LISTDOMAIN gives the list and no member;
// LIST-bounces+LOCAL=DOMAIN@LISTDOMAIN gives the list and the member.
// Anything else is ErrNotBounceAddress; a "-bounces+" address whose
// member part is not an address is ErrMalformedVERP.
func ParseBounceAddress(rcpt string) (list, member string, err error) {
	a, err := address.Parse(rcpt)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrNotBounceAddress, rcpt, err)
	}
	lower := strings.ToLower(a.Local)
	if i := strings.Index(lower, bouncesVERPSeparator); i >= 0 {
		if i == 0 {
			return "", "", fmt.Errorf("%w: %q: no list name", ErrMalformedVERP, rcpt)
		}
		list = address.Mailbox{Local: a.Local[:i], Domain: a.Domain}.String()
		enc := a.Local[i+len(bouncesVERPSeparator):]
		j := strings.LastIndex(enc, verpAtReplacement)
		if j <= 0 || j == len(enc)-1 {
			return "", "", fmt.Errorf("%w: %q: member part %q is not LOCAL=DOMAIN", ErrMalformedVERP, rcpt, enc)
		}
		m, err := address.Parse(address.Mailbox{Local: enc[:j], Domain: enc[j+1:]}.String())
		if err != nil {
			return "", "", fmt.Errorf("%w: %q: member %s@%s: %v", ErrMalformedVERP, rcpt, enc[:j], enc[j+1:], err)
		}
		if _, err := address.Parse(list); err != nil {
			return "", "", fmt.Errorf("%w: %q: list: %v", ErrMalformedVERP, rcpt, err)
		}
		return list, m.String(), nil
	}
	if strings.HasSuffix(lower, bouncesSuffix) && len(lower) > len(bouncesSuffix) {
		list = address.Mailbox{Local: a.Local[:len(a.Local)-len(bouncesSuffix)], Domain: a.Domain}.String()
		if _, err := address.Parse(list); err != nil {
			return "", "", fmt.Errorf("%w: %q: list: %v", ErrNotBounceAddress, rcpt, err)
		}
		return list, "", nil
	}
	return "", "", fmt.Errorf("%w: %q", ErrNotBounceAddress, rcpt)
}

// Evidence is what one message to a list's bounce address says about
// the list's members.
type Evidence struct {
	List   string // the list the bounce address belongs to
	Member string // the member named by VERP, if the address was VERP'd
	Report Report // the parsed message
	// Members are the failures to score, one per member address. With
	// VERP, only the VERP member; without, every recipient the report
	// names (the caller ignores addresses that are not members).
	Members []Recipient
}

// Examine is the entry point for mail delivered to a list's bounce
// address rcpt. A VERP'd address names the member without reading the
// body (Mailman's StandardVERP); the message is still parsed to tell a
// hard failure from a soft one or a delay, and to keep the diagnostic.
//
// With VERP, the member's evidence is the report's entry for the member
// if there is one, else the worst failure the report gives (the remote
// may report the address the member forwards to). When nothing can be
// read, Mailman's rule applies with one deviation: a message that looks
// like a mail system's report (from MAILER-DAEMON, a multipart/report, a
// bounce subject) counts as a hard failure, as Mailman counts any VERP
// bounce without temporary failures, unless it calls itself a delay
// warning; but auto-replies, challenges and messages that look like no
// report at all give no evidence, where Mailman would count them, since
// vacation programs and people do write to envelope senders.
func Examine(rcpt string, msg io.Reader) (Evidence, error) {
	list, member, err := ParseBounceAddress(rcpt)
	if err != nil {
		return Evidence{}, err
	}
	res, err := parse(msg)
	if err != nil {
		return Evidence{}, err
	}
	ev := Evidence{List: list, Member: member, Report: res.Report}
	if member == "" {
		ev.Members = res.Recipients
		return ev, nil
	}
	if rc, ok := verpEvidence(member, res); ok {
		ev.Members = []Recipient{rc}
	}
	return ev, nil
}

func verpEvidence(member string, res result) (Recipient, bool) {
	for _, rc := range res.Recipients {
		if rc.Address == member {
			return rc, true
		}
		if rc.FinalRecipient == member {
			rc.Address, rc.FinalRecipient = member, ""
			return rc, true
		}
	}
	var worst *Recipient
	for _, rs := range [][]Recipient{res.Recipients, res.unnamed} {
		for i := range rs {
			if worst == nil || rank(rs[i]) > rank(*worst) {
				worst = &rs[i]
			}
		}
	}
	if worst != nil {
		rc := *worst
		if rc.Address != member {
			rc.FinalRecipient = firstNonEmpty(rc.FinalRecipient, rc.Address)
		}
		rc.Address = member
		return rc, true
	}
	if res.Format != Unrecognized {
		return Recipient{}, false
	}
	rc := Recipient{
		Address:    member,
		Action:     dsn.Failed,
		Status:     "5.0.0",
		Diagnostic: "bounce to VERP address; no recipient could be read from it",
	}
	if res.delayLike {
		rc.Action, rc.Status = dsn.Delayed, "4.0.0"
	}
	rc.Evidence = rc.Diagnostic
	finish(&rc)
	return rc, true
}
