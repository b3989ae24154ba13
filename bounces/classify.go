package bounces

import (
	"regexp"
	"strconv"
	"strings"

	"fanmail/dsn"
)

// Severity says whether a failure is evidence that the member's address
// is gone (Hard) or only that this delivery failed (Soft).
type Severity string

const (
	// Hard: a permanent condition of the address or mailbox (RFC 3463
	// class 5 with an addressing or mailbox subject): no such user, no
	// such domain, mailbox disabled.
	Hard Severity = "hard"
	// Soft: a transient condition (class 4), or a permanent one that
	// says nothing about the address: mailbox full, message too big,
	// policy or spam rejection, a remote system or network problem.
	Soft Severity = "soft"
)

// The classification table. RFC 3463 §3 defines the class digit: 4 is a
// persistent transient failure, 5 a permanent one. Permanent is not the
// same as "the member's address is bad": 5.2.2 (mailbox full), 5.3.x
// (the remote system), 5.6.x (this message's content) and 5.7.x (policy,
// mostly spam filters) are permanent for this message only. Mailman's
// bounce help (Mailman 2.1, Mailman/Gui/Bounce.py) calls a fatal error
// hard and a transient one soft, and says "when in doubt, a hard
// severity is used"; which permanent codes count as soft follows common
// practice (Sympa's bounce management, for one, weighs a full mailbox at
// half a permanent error) and RFC 3463's descriptions of the subjects.
//
//	class 2 (success), class 4 (transient)   soft
//	5.0.x  other/undefined                   hard, unless the text says otherwise
//	5.1.x  addressing                        hard, except 5.1.5 (address valid),
//	                                         5.1.7/5.1.8 (the sender's address),
//	                                         5.1.9 (relayed to a non-DSN mailer): soft
//	5.2.x  mailbox                           hard for 5.2.0/5.2.1 (disabled),
//	                                         soft for 5.2.2 (full), 5.2.3 (message
//	                                         too big), 5.2.4 (list expansion)
//	5.3.x  mail system                       soft
//	5.4.x  network and routing               soft, except 5.4.4 (unable to route:
//	                                         the domain does not exist): hard
//	5.5.x  protocol                          soft, unless the text says otherwise
//	5.6.x  message content                   soft
//	5.7.x  security and policy               soft, except 5.7.13 (user account
//	                                         disabled) and 5.7.17/5.7.18 (mailbox or
//	                                         domain owner changed, RFC 7293): hard
//
// "Unless the text says otherwise": generic codes (X.0.0, 5.x.0, 5.5.x and
// a missing code) are refined by the diagnostic text — a more specific
// enhanced code inside it (Gmail reports "Status: 5.0.0" with "550 #5.1.0"
// in the diagnostic), else the phrases in softPhrases and hardPhrases.
// A class 4 code is soft whatever the text says: transient failures never
// count as hard.

// statusRE matches an RFC 3463 enhanced status code in text; qmail writes
// it as "(#5.1.1)", Gmail as "#5.1.0".
var statusRE = regexp.MustCompile(`(?:^|[\s(#])([245]\.\d{1,3}\.\d{1,3})(?:$|[\s).,;:'"])`)

// replyRE matches a leading SMTP reply code, as in "550 5.1.1 ..." or
// "550-5.1.1 ..." or "#550 ...".
var replyRE = regexp.MustCompile(`(?:^|[\s#'"])([245]\d\d)(?:[\s-]|$)`)

// softPhrases are checked before hardPhrases: "mailbox full" must not be
// read as "mailbox" trouble, and "host not found, try again" is a DNS
// timeout, not a missing domain.
var softPhrases = []string{
	"mailbox full", "mailbox is full", "mailbox is over quota", "over quota",
	"quota exceeded", "exceeded storage", "insufficient storage", "disk quota",
	"try again", "temporar", "timed out", "connection refused", "retry timeout exceeded",
	"too many", "rate limit", "greylist", "graylist", "spam", "blocked", "blacklist",
	"blocklist", "dnsbl", "rbl", "reputation", "policy", "message too large",
	"message size", "size exceeds", "too big",
}

var hardPhrases = []string{
	"user unknown", "unknown user", "no such user", "no such mailbox", "no such recipient",
	"no such address", "unknown recipient", "invalid recipient", "recipient unknown",
	"recipient not found", "recipnotfound", "recipientnotfound", "address rejected",
	"address not found", "address couldn't be found", "mailbox unavailable",
	"mailbox not found", "mailbox does not exist", "does not exist", "doesn't exist",
	"no mailbox here", "not a valid mailbox", "account disabled", "account has been disabled",
	"account is disabled", "account is locked", "mailbox disabled", "inactive",
	"unrouteable address", "host or domain name not found", "no such domain",
	"domain not found", "couldn't be found", "host not found", "name service error",
	"not our customer", "user not found", "invalid mailbox", "bad destination",
}

// Classify returns the severity of one failure from its RFC 3463 status
// code and its diagnostic text (either may be empty).
func Classify(status, diagnostic string) Severity {
	code := status
	if !validStatus(code) {
		code = statusIn(diagnostic)
	}
	if code == "" {
		if r := replyCode(diagnostic); r != 0 {
			code = strconv.Itoa(r/100) + ".0.0"
		} else {
			code = "5.0.0"
		}
	}
	class, subject, detail, ok := splitStatus(code)
	if !ok || class != 5 {
		return Soft
	}
	if generic(subject, detail) {
		// A more specific code in the text decides, if there is one.
		if inner := statusIn(diagnostic); inner != "" && inner != code {
			if c, s, d, ok := splitStatus(inner); ok && !generic(s, d) {
				if c != 5 {
					return Soft
				}
				return bySubject(s, d)
			}
		}
		if sev, ok := byText(diagnostic); ok {
			return sev
		}
		if subject == 5 {
			return Soft // protocol trouble says nothing about the address
		}
	}
	return bySubject(subject, detail)
}

// generic reports whether a 5.S.D code is too vague to decide alone.
func generic(subject, detail int) bool {
	return subject == 0 || detail == 0 || subject == 5
}

func bySubject(subject, detail int) Severity {
	switch subject {
	case 0:
		return Hard // Mailman: "when in doubt, a hard severity is used"
	case 1:
		switch detail {
		case 5, 7, 8, 9:
			return Soft
		}
		return Hard
	case 2:
		if detail <= 1 {
			return Hard
		}
		return Soft
	case 4:
		if detail == 4 {
			return Hard
		}
		return Soft
	case 7:
		switch detail {
		case 13, 17, 18:
			return Hard
		}
		return Soft
	}
	return Soft
}

func byText(diagnostic string) (Severity, bool) {
	if diagnostic == "" {
		return "", false
	}
	d := strings.ToLower(diagnostic)
	for _, p := range softPhrases {
		if strings.Contains(d, p) {
			return Soft, true
		}
	}
	for _, p := range hardPhrases {
		if strings.Contains(d, p) {
			return Hard, true
		}
	}
	return "", false
}

// splitStatus parses "C.S.D".
func splitStatus(s string) (class, subject, detail int, ok bool) {
	a, rest, ok1 := strings.Cut(s, ".")
	b, c, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return 0, 0, 0, false
	}
	var err error
	if class, err = strconv.Atoi(a); err != nil || (class != 2 && class != 4 && class != 5) {
		return 0, 0, 0, false
	}
	if subject, err = strconv.Atoi(b); err != nil || subject < 0 || subject > 999 || len(b) > 3 {
		return 0, 0, 0, false
	}
	if detail, err = strconv.Atoi(c); err != nil || detail < 0 || detail > 999 || len(c) > 3 {
		return 0, 0, 0, false
	}
	return class, subject, detail, true
}

// validStatus reports whether s is an RFC 3463 status code.
func validStatus(s string) bool {
	_, _, _, ok := splitStatus(s)
	return ok
}

// statusIn returns the first enhanced status code in text.
func statusIn(text string) string {
	if m := statusRE.FindStringSubmatch(text); m != nil {
		return m[1]
	}
	return ""
}

// replyCode returns the first SMTP reply code in text, or 0.
func replyCode(text string) int {
	if m := replyRE.FindStringSubmatch(text); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// inferStatus fills in a status for a failure reported without one:
// the enhanced code in the diagnostic, else the reply code's class, else
// what the action implies.
func inferStatus(action dsn.Action, diagnostic string) string {
	if s := statusIn(diagnostic); s != "" {
		return s
	}
	if r := replyCode(diagnostic); r >= 400 {
		return strconv.Itoa(r/100) + ".0.0"
	}
	if action == dsn.Delayed {
		return "4.0.0"
	}
	return "5.0.0"
}

// FromReply is the evidence of a synchronous failure: delivery to rcpt
// got reply code (0 for a local failure such as a DNS error), enhanced
// status and text from host, and judged it permanent or not (delivery's
// *Error carries exactly these fields). A permanent failure is "failed";
// anything else is "delayed", since the queue retries it.
func FromReply(rcpt string, permanent bool, code int, enhanced, text, host string) (Recipient, error) {
	addr, err := normalize(rcpt)
	if err != nil {
		return Recipient{}, err
	}
	action := dsn.Delayed
	if permanent {
		action = dsn.Failed
	}
	diag := text
	if code != 0 {
		diag = strconv.Itoa(code) + " " + strings.TrimSpace(enhanced+" "+text)
	}
	diag = oneLine(diag, maxDiagnostic)
	rc := Recipient{
		Address:    addr,
		Action:     action,
		Status:     enhanced,
		Diagnostic: diag,
		RemoteMTA:  host,
		Evidence:   diag,
	}
	finish(&rc)
	return rc, nil
}
