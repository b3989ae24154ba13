package bounces

import (
	"regexp"
	"strings"

	"fanmail/dsn"
)

// The large mailbox providers' notices, which are written for people:
// the sentences carry the address and the reply quoted below them.

// paragraphs joins the lines between blank lines into one string each,
// from line from to line to (exclusive).
func paragraphs(lines []string, from, to int) []string {
	var ps []string
	var cur []string
	for i := from; i < to; i++ {
		t := strings.TrimSpace(lines[i])
		if t == "" {
			if len(cur) > 0 {
				ps = append(ps, strings.Join(cur, " "))
				cur = nil
			}
			continue
		}
		cur = append(cur, t)
	}
	if len(cur) > 0 {
		ps = append(ps, strings.Join(cur, " "))
	}
	return ps
}

// Gmail, in its current form (text/plain beside an HTML part, usually
// with a DSN part too):
//
//	** Address not found **
//
//	Your message wasn't delivered to ann@example.org because the address
//	couldn't be found, or is unable to receive mail.
//
//	The response from the remote server was:
//	550 5.1.1 The email account that you tried to reach does not exist.
//
// "There was a problem delivering your message to X" is a failure with
// the reason in the response; "There was a temporary problem delivering
// your message to X. Gmail will retry ..." is a delay. Its older form:
//
//	Delivery to the following recipient failed permanently:
//
//	     ann@example.org
//
//	Technical details of permanent failure:
//	... The error that the other server returned was:
//	550-5.1.1 The email account that you tried to reach does not exist. ...
//
// and "Delivery to the following recipient has been delayed:".
var (
	gmailNotDeliveredRE = regexp.MustCompile(`(?i)your message wasn['’]t delivered to\s+<?([^\s<>]+@[^\s<>]+?)>?\s+because\s+(.*)$`)
	gmailProblemRE      = regexp.MustCompile(`(?i)there was a (temporary )?problem delivering your message to\s+<?([^\s<>]+@[^\s<>]+?)>?(?:[.\s]|$)`)
	gmailOldHeadRE      = regexp.MustCompile(`(?i)^delivery to the following recipients? (failed permanently|has been delayed|failed temporarily|was delayed)`)
	gmailResponseRE     = regexp.MustCompile(`(?i)(?:the response (?:from the remote server )?was:|the error that the other server returned was:)\s*(.*)$`)
	bareAddressRE       = regexp.MustCompile(`^<?([^\s<>@]+@[^\s<>@]+?)>?$`)
)

func gmailText(m *mail) ([]rawRecipient, bool) {
	// The regular expressions below are costly; most text has none of
	// the sentences they look for.
	if m.findLine(0, "delivered to") < 0 && m.findLine(0, "problem delivering your message") < 0 &&
		m.findLine(0, "delivery to the following recipient") < 0 {
		return nil, false
	}
	end := m.findLine(0, "----- Original message -----")
	if end < 0 {
		end = len(m.lines)
	}
	ps := paragraphs(m.lines, 0, end)
	var rs []rawRecipient
	response := ""
	for i, p := range ps {
		if r := gmailResponseRE.FindStringSubmatch(p); r != nil && response == "" {
			response = r[1]
			if response == "" && i+1 < len(ps) {
				response = ps[i+1]
			}
		}
	}
	for i, p := range ps {
		if len(rs) > maxRecipients {
			break
		}
		if g := gmailNotDeliveredRE.FindStringSubmatch(p); g != nil {
			rc := rawRecipient{addr: g[1], action: dsn.Failed, diagnostic: response, evidence: p}
			if rc.diagnostic == "" {
				rc.diagnostic = g[2]
			}
			// What the sentence means, where the response gives no code.
			if statusIn(rc.diagnostic) == "" {
				switch {
				case containsFold(g[2], "the address couldn"):
					rc.status = "5.1.1"
				case containsFold(g[2], "the domain") && containsFold(g[2], "couldn"):
					rc.status = "5.1.2"
				}
			}
			rs = append(rs, rc)
			continue
		}
		if g := gmailProblemRE.FindStringSubmatch(p); g != nil {
			rc := rawRecipient{addr: g[2], action: dsn.Failed, diagnostic: response, evidence: p}
			if g[1] != "" {
				rc.action = dsn.Delayed
			}
			rs = append(rs, rc)
			continue
		}
		if h := gmailOldHeadRE.FindStringSubmatch(p); h != nil {
			action := dsn.Failed
			if !containsFold(h[1], "permanently") {
				action = dsn.Delayed
			}
			// The addresses follow, one per line, in the next paragraph.
			if i+1 < len(ps) {
				for _, a := range strings.Fields(ps[i+1]) {
					if bareAddressRE.MatchString(a) && len(rs) <= maxRecipients {
						rs = append(rs, rawRecipient{addr: a, action: action, diagnostic: response, evidence: p + "\n" + ps[i+1]})
					}
				}
			}
		}
	}
	return rs, len(rs) > 0
}

// Exchange and Microsoft 365 non-delivery reports:
//
//	Delivery has failed to these recipients or groups:
//
//	Ann Example<mailto:ann@example.org>
//	The email address you entered couldn't be found. ...
//
//	Diagnostic information for administrators:
//
//	Generating server: EX1.example.net
//
//	ann@example.org
//	Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'
//
//	Original message headers:
//
// Exchange 2007 writes "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##"
// instead of "Remote Server returned"; newer servers "Remote server at
// HOST (IP) returned". Microsoft 365's newer layout opens with "Your
// message to ann@example.org couldn't be delivered." A delay says
// "Delivery is delayed to these recipients or groups:".
var (
	exchangeMailtoRE   = regexp.MustCompile(`(?i)mailto:([^\s<>"']+@[^\s<>"']+)`)
	exchangeYourMsgRE  = regexp.MustCompile(`(?i)your message to\s+<?([^\s<>]+@[^\s<>]+?)>?\s+couldn['’]t be delivered`)
	exchangeReturnedRE = regexp.MustCompile(`(?i)^remote server(?: at (\S+)[^']*)? returned '(.*)'\s*$`)
)

func exchangeText(m *mail) ([]rawRecipient, bool) {
	action := dsn.Failed
	head := m.findLine(0, "Delivery has failed to these recipients or")
	if head < 0 {
		if head = m.findLine(0, "Delivery is delayed to these recipients or"); head >= 0 {
			action = dsn.Delayed
		}
	}
	diag := m.findLine(0, "Diagnostic information for administrators")
	var rs []rawRecipient
	// find returns the recipient addr, added with the line naming it
	// as its first evidence if it is new.
	find := func(addr, line string) *rawRecipient {
		for i := range rs {
			if strings.EqualFold(rs[i].addr, addr) {
				return &rs[i]
			}
		}
		if len(rs) > maxRecipients {
			return nil
		}
		rs = append(rs, rawRecipient{addr: addr, action: action, evidence: line + "\n"})
		return &rs[len(rs)-1]
	}
	if head >= 0 {
		// The recipients, each followed by a sentence explaining it.
		var last *rawRecipient
		for i := head + 1; i < len(m.lines); i++ {
			t := strings.TrimSpace(m.lines[i])
			if i == diag || strings.HasPrefix(t, "____") || containsFold(t, "Sent by Microsoft Exchange") {
				break
			}
			if t == "" {
				continue
			}
			addr := ""
			if mt := exchangeMailtoRE.FindStringSubmatch(t); mt != nil {
				addr = mt[1]
			} else if b := bareAddressRE.FindStringSubmatch(t); b != nil {
				addr = b[1]
			}
			if addr != "" {
				last = find(addr, t)
				continue
			}
			if last != nil {
				last.evidence += t + "\n"
				if last.diagnostic == "" {
					last.diagnostic = t
				}
			}
		}
	} else if m.findLine(0, "your message to") >= 0 {
		if y := firstMatch(m.lines, exchangeYourMsgRE); y != nil {
			find(y[1], y[0])
		}
	}
	if diag >= 0 {
		var cur *rawRecipient
		for i := diag + 1; i < len(m.lines); i++ {
			t := strings.TrimSpace(m.lines[i])
			if containsFold(t, "Original message headers") {
				break
			}
			if g, ok := cutPrefixFold(t, "Generating server:"); ok {
				m.reportingMTA = g
				continue
			}
			if b := bareAddressRE.FindStringSubmatch(t); b != nil {
				cur = find(b[1], t)
				continue
			}
			if cur == nil || t == "" {
				continue
			}
			switch r := exchangeReturnedRE.FindStringSubmatch(t); {
			case r != nil:
				cur.remote, cur.diagnostic = r[1], r[2]
			case strings.HasPrefix(t, "#"):
				cur.diagnostic = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(t, "#"), "##"))
			default:
				continue
			}
			cur.evidence += t + "\n"
		}
	}
	return rs, head >= 0 || diag >= 0
}

func firstMatch(lines []string, re *regexp.Regexp) []string {
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			return m
		}
	}
	return nil
}

// bounceLike reports whether the header looks like a mail system's
// report: from MAILER-DAEMON or postmaster, a multipart/report, or a
// subject mail systems use.
func (m *mail) bounceLike() bool {
	if m.report {
		return true
	}
	from := strings.ToLower(m.header.Get("From"))
	for _, s := range []string{"mailer-daemon", "mailer_daemon", "mail-daemon", "mailerdaemon", "postmaster@", "mail delivery"} {
		if strings.Contains(from, s) {
			return true
		}
	}
	subj := strings.ToLower(m.subject)
	for _, s := range []string{"undeliver", "returned mail", "delivery status notification", "delivery failure",
		"failure notice", "mail delivery failed", "delivery has failed", "could not be delivered",
		"delivery notification", "returned to sender", "delayed mail", "delivery delayed", "nondeliverable"} {
		if strings.Contains(subj, s) {
			return true
		}
	}
	return false
}

// delayLike reports whether the message calls itself a delay warning.
func (m *mail) delayLike() bool {
	subj := strings.ToLower(m.subject)
	for _, s := range []string{"delay", "warning", "still being retried", "not yet delivered", "will retry"} {
		if strings.Contains(subj, s) {
			return true
		}
	}
	for _, s := range []string{"this is a warning", "will be retried", "will retry", "not yet been delivered",
		"delivery attempts will continue", "you do not need to resend"} {
		if m.findLine(0, s) >= 0 {
			return true
		}
	}
	return false
}

// isAutoReply recognises RFC 3834 automatic responses and the
// vacation programs that predate it: Auto-Submitted other than "no"
// (RFC 3834 §5), the X-Autoreply family, Precedence: auto_reply, and the
// subjects out-of-office responders write.
func isAutoReply(m *mail) bool {
	if v := strings.ToLower(strings.TrimSpace(m.header.Get("Auto-Submitted"))); v != "" && v != "no" {
		return true
	}
	for _, k := range []string{"X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply", "X-Vacation"} {
		if m.header.Get(k) != "" {
			return true
		}
	}
	if strings.EqualFold(strings.TrimSpace(m.header.Get("Precedence")), "auto_reply") {
		return true
	}
	subj := strings.ToLower(m.subject)
	for _, s := range []string{"auto:", "automatic reply", "auto reply", "auto-reply", "autoreply",
		"out of office", "out of the office", "vacation", "away from", "abwesenheit", "réponse automatique",
		"respuesta automática"} {
		if strings.Contains(subj, s) {
			return true
		}
	}
	return false
}

// isChallenge recognises challenge-response systems (TMDA, Boxbe,
// SpamArrest and their kind), which answer mail from unknown senders
// with a request to confirm: their headers, or a request to confirm or
// verify in the subject or text together with talk of approved senders
// or spam.
func isChallenge(m *mail) bool {
	if containsFold(m.header.Get("X-Delivery-Agent"), "TMDA") {
		return true
	}
	for _, k := range []string{"X-Challenge", "X-Boxbe-Challenge", "X-Spamarrest-Challenge", "X-Challenge-Response"} {
		if m.header.Get(k) != "" {
			return true
		}
	}
	asks := false
	for _, s := range []string{"confirm", "verify", "verification", "approve"} {
		if containsFold(m.subject, s) || m.findLine(0, s) >= 0 {
			asks = true
			break
		}
	}
	if !asks {
		return false
	}
	for _, s := range []string{"approved senders", "approved sender list", "whitelist", "allowlist",
		"to control spam", "spam protection", "challenge", "verify that you are", "confirm that you are"} {
		if m.findLine(0, s) >= 0 {
			return true
		}
	}
	return false
}
