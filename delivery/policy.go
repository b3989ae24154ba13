package delivery

import (
	"fmt"
	"strings"
	"time"
)

// TLSMode says how outbound STARTTLS is used.
type TLSMode string

const (
	// TLSOpportunistic uses STARTTLS when offered, without verifying the
	// certificate, and falls back to plain text if the handshake fails
	// (RFC 7435). The default.
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSRequired refuses to send unless STARTTLS succeeds with a
	// certificate valid for the MX host name; otherwise recipients are
	// deferred (4.7.10, 4.7.5).
	TLSRequired TLSMode = "required"
	// TLSNone never uses STARTTLS.
	TLSNone TLSMode = "none"
)

func (m TLSMode) valid() bool {
	return m == TLSOpportunistic || m == TLSRequired || m == TLSNone
}

// Destination overrides the limits for the domains or MX hosts its Match
// pattern names. Zero fields keep the global value.
type Destination struct {
	// Match is a domain ("example.com"), or a suffix ("*.example.com" or
	// ".example.com", which match names below example.com). It is matched
	// against the recipient domain and each of its MX host names, so
	// "*.google.com" covers every domain hosted there.
	Match       string
	MaxConns    int           // connections open at once to the MX group
	RcptsPerTxn int           // recipients per mail transaction
	TxnsPerConn int           // transactions before a connection is closed
	RateDelay   time.Duration // pause between transactions started to the group
	TLS         TLSMode       // "" keeps Config.TLS
}

// matches reports whether pattern p names the lowercase name.
func matchPattern(p, name string) bool {
	p = strings.ToLower(p)
	switch {
	case strings.HasPrefix(p, "*."):
		return strings.HasSuffix(name, p[1:])
	case strings.HasPrefix(p, "."):
		return strings.HasSuffix(name, p)
	}
	return name == p
}

// ReplyAction is what a ReplyRule does to the MX group that replied.
type ReplyAction string

const (
	ActionHalve   ReplyAction = "halve"   // halve the group's concurrency window
	ActionSuspend ReplyAction = "suspend" // stop delivering to the group for Suspend
	ActionNone    ReplyAction = "none"    // no change: stops later rules matching
)

// ReplyRule maps a receiver's reply to an action on its MX group. Rules
// are tried in order and the first match wins, so specific rules go first.
type ReplyRule struct {
	// Code is matched as a prefix of "CODE ENHANCED", such as "421",
	// "421 4.7.28" or "4" (every 4xx).
	Code string
	// Text, if set, must appear in the reply text (case-insensitive).
	Text    string
	Action  ReplyAction
	Suspend time.Duration // for ActionSuspend
}

// DefaultReplyRules are used when Config.ReplyRules is nil: the providers'
// documented rate-limit replies suspend their MX group, and any other 421
// (the server is closing: overloaded or throttling) halves concurrency.
// There is deliberately no rule on a bare "try again later": mailbox-full
// and too-many-connections replies say it too, and must not stop a whole
// provider.
var DefaultReplyRules = []ReplyRule{
	{Code: "421 4.7.28", Action: ActionSuspend, Suspend: 15 * time.Minute},             // Gmail: unusual rate
	{Code: "421 4.7.0", Text: "[TS", Action: ActionSuspend, Suspend: 30 * time.Minute}, // Yahoo: temporarily deferred
	{Code: "451 4.7.500", Action: ActionSuspend, Suspend: 5 * time.Minute},             // Outlook: server busy
	{Code: "421", Action: ActionHalve},
}

func (r ReplyRule) matches(code int, enhanced, text string) bool {
	s := fmt.Sprintf("%d %s", code, enhanced)
	if !strings.HasPrefix(s, r.Code) {
		return false
	}
	return r.Text == "" || strings.Contains(strings.ToLower(text), strings.ToLower(r.Text))
}

func (r ReplyRule) check() error {
	if r.Code == "" || !strings.ContainsAny(r.Code[:1], "2345") {
		return fmt.Errorf("reply rule code %q: must start with a reply code digit", r.Code)
	}
	switch r.Action {
	case ActionHalve, ActionNone:
	case ActionSuspend:
		if r.Suspend <= 0 {
			return fmt.Errorf("reply rule %q: suspend needs a positive duration", r.Code)
		}
	default:
		return fmt.Errorf("reply rule %q: unknown action %q (halve, suspend, none)", r.Code, r.Action)
	}
	return nil
}

// limits are one MX group's effective settings.
type limits struct {
	maxConns    int
	rcptsPerTxn int
	txnsPerConn int
	rateDelay   time.Duration
	tls         TLSMode
}

// policy returns the limits for domain delivered through hosts: the
// first Destination whose pattern matches the domain or an MX host
// overrides the global values.
func (a *Agent) policy(domain string, hosts []string) limits {
	cfg := &a.cfg
	l := limits{cfg.MaxConns, cfg.RcptsPerTxn, cfg.TxnsPerConn, cfg.RateDelay, cfg.TLS}
	for _, d := range cfg.Destinations {
		hit := matchPattern(d.Match, domain)
		for _, h := range hosts {
			hit = hit || matchPattern(d.Match, h)
		}
		if !hit {
			continue
		}
		if d.MaxConns > 0 {
			l.maxConns = d.MaxConns
		}
		if d.RcptsPerTxn > 0 {
			l.rcptsPerTxn = d.RcptsPerTxn
		}
		if d.TxnsPerConn > 0 {
			l.txnsPerConn = d.TxnsPerConn
		}
		if d.RateDelay > 0 {
			l.rateDelay = d.RateDelay
		}
		if d.TLS != "" {
			l.tls = d.TLS
		}
		break
	}
	return l
}
