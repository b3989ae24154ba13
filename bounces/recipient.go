package bounces

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"fanmail/address"
	"fanmail/dsn"
)

// Turning what the detectors found into Recipients: address checks,
// inferred status and severity, deduplication and the size bounds.

// rawRecipient is a recipient as a detector found it, before the
// address is checked and the status inferred.
type rawRecipient struct {
	addr, final string
	action      dsn.Action
	status      string
	diagnostic  string
	remote      string
	evidence    string
}

func countNamed(rs []rawRecipient) int {
	n := 0
	for _, r := range rs {
		if _, err := normalize(r.addr); err == nil {
			n++
		} else if _, err := normalize(r.final); err == nil {
			n++
		}
	}
	return n
}

// finishAll checks addresses and fills in status and severity. A
// recipient whose address cannot be read is kept apart: it still tells
// what kind of failure a VERP-addressed bounce reports.
func finishAll(raws []rawRecipient) (named, unnamed []Recipient) {
	for _, r := range raws {
		rc := Recipient{
			Action:     r.action,
			Status:     r.status,
			Diagnostic: oneLine(r.diagnostic, maxDiagnostic),
			RemoteMTA:  hostName(r.remote),
			Evidence:   excerpt(r.evidence, maxEvidence),
		}
		addr, errA := normalize(r.addr)
		final, errF := normalize(r.final)
		switch {
		case errA == nil:
			rc.Address = addr
			if errF == nil && final != addr {
				rc.FinalRecipient = final
			}
		case errF == nil:
			rc.Address = final
		}
		finish(&rc)
		if rc.Address == "" {
			if len(unnamed) < maxRecipients {
				unnamed = append(unnamed, rc)
			}
			continue
		}
		named = merge(named, rc)
	}
	return named, unnamed
}

// finish fills in what a recipient's report left out.
func finish(rc *Recipient) {
	if rc.Action != dsn.Delayed {
		rc.Action = dsn.Failed
	}
	if !validStatus(rc.Status) {
		rc.Status = inferStatus(rc.Action, rc.Diagnostic)
	}
	rc.Severity = Classify(rc.Status, rc.Diagnostic)
	if rc.Action == dsn.Delayed {
		// A delay is a warning that delivery is still being tried:
		// never evidence that the address is gone.
		rc.Severity = Soft
	}
}

// merge adds rc to rs, or folds it into an entry for the same address,
// keeping the worse finding (failed over delayed, hard over soft).
func merge(rs []Recipient, rc Recipient) []Recipient {
	for i, o := range rs {
		if o.Address != rc.Address {
			continue
		}
		if rank(rc) > rank(o) {
			rc.Diagnostic = firstNonEmpty(rc.Diagnostic, o.Diagnostic)
			rc.RemoteMTA = firstNonEmpty(rc.RemoteMTA, o.RemoteMTA)
			rs[i] = rc
		} else {
			rs[i].Diagnostic = firstNonEmpty(o.Diagnostic, rc.Diagnostic)
			rs[i].RemoteMTA = firstNonEmpty(o.RemoteMTA, rc.RemoteMTA)
		}
		return rs
	}
	if len(rs) > maxRecipients {
		return rs // the caller marks the report truncated
	}
	return append(rs, rc)
}

func rank(rc Recipient) int {
	r := 0
	if rc.Action == dsn.Failed {
		r += 2
	}
	if rc.Severity == Hard {
		r++
	}
	return r
}

// fillFrom completes DSN recipients with what the text says about the
// same address.
func fillFrom(rs, text []Recipient) []Recipient {
	for i := range rs {
		for _, t := range text {
			if t.Address != rs[i].Address && t.Address != rs[i].FinalRecipient {
				continue
			}
			if rs[i].Diagnostic == "" && t.Diagnostic != "" {
				rs[i].Diagnostic = t.Diagnostic
				rs[i].Severity = Classify(rs[i].Status, rs[i].Diagnostic)
				if rs[i].Action == dsn.Delayed {
					rs[i].Severity = Soft
				}
			}
			rs[i].RemoteMTA = firstNonEmpty(rs[i].RemoteMTA, t.RemoteMTA)
		}
	}
	return rs
}

func failedHeader(v string) []rawRecipient {
	var rs []rawRecipient
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			rs = append(rs, rawRecipient{addr: a, action: dsn.Failed, evidence: "X-Failed-Recipients: " + a})
		}
		if len(rs) > maxRecipients {
			break
		}
	}
	return rs
}

// normalize reads an address as reports write it: perhaps in angle
// brackets or quotes, perhaps followed by punctuation.
func normalize(s string) (string, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimRight(s, ".,;:")
	for _, q := range []string{"'", `"`} {
		// A quoted whole address, not a quoted local part.
		if len(s) > 2 && strings.HasPrefix(s, q) && strings.HasSuffix(s, q) && !strings.Contains(s[1:len(s)-1], q) {
			s = s[1 : len(s)-1]
		}
	}
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
	}
	s = strings.TrimPrefix(strings.TrimPrefix(s, "mailto:"), "MAILTO:")
	if s == "" {
		return "", fmt.Errorf("empty address")
	}
	return address.Normalize(s)
}

// oneLine collapses whitespace and cuts s to at most n bytes.
func oneLine(s string, n int) string {
	return excerpt(strings.Join(strings.Fields(s), " "), n)
}

// excerpt cuts s to at most n bytes of valid UTF-8.
func excerpt(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// hostName cleans a host name as reports write it ("dns; mx.example.org",
// "[192.0.2.1]", a trailing dot or comment).
func hostName(s string) string {
	if _, v, ok := strings.Cut(s, ";"); ok {
		s = v
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	s = strings.Trim(f[0], "[]<>()")
	s = strings.TrimRight(s, ".:,")
	return excerpt(s, maxHostName)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
