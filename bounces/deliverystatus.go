package bounces

import (
	"strconv"
	"strings"

	"fanmail/dsn"
)

// maxGroups bounds the field groups read from one delivery-status part.
const maxGroups = maxRecipients + 2

// parseDeliveryStatus reads the body of a message/delivery-status part
// (RFC 3464 §2.1) or message/global-delivery-status part (RFC 6533 §6.2):
// groups of header-style fields separated by blank lines, the first about
// the message, each further one about one recipient. It returns the
// Reporting-MTA, the failed and delayed recipients, and how many
// recipient groups there were (whatever their action).
//
// Real reports bend the grammar, so the reading is lenient: a group is a
// recipient group if it names a recipient, wherever it stands (Exim has
// written a blank line inside the per-message group), field names are
// case-insensitive, and unknown fields are ignored.
func parseDeliveryStatus(b []byte) (reportingMTA string, rcpts []rawRecipient, groups int) {
	text := strings.ToValidUTF8(string(b), "\uFFFD")
	text = strings.ReplaceAll(text, "\r\n", "\n")
	var cur []string
	flush := func() {
		if len(cur) == 0 {
			return
		}
		f := fields(cur)
		if mta := f["reporting-mta"]; mta != "" && reportingMTA == "" {
			reportingMTA = mta
		}
		if f["final-recipient"] != "" || f["original-recipient"] != "" {
			groups++
			if rc, ok := recipientGroup(f, cur); ok {
				rcpts = append(rcpts, rc)
			}
		}
		cur = cur[:0]
	}
	for _, line := range strings.Split(text, "\n") {
		if groups >= maxGroups {
			break
		}
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if len(cur) < 64 { // fields per group: RFC 3464 defines about a dozen
			cur = append(cur, line)
		}
	}
	flush()
	return reportingMTA, rcpts, groups
}

// fields unfolds a group's lines (RFC 5322 §2.2.3: a line starting with
// white space continues the previous one) into name → value, the first
// occurrence of each name winning.
func fields(lines []string) map[string]string {
	f := make(map[string]string, len(lines))
	var name string
	for _, l := range lines {
		if (l[0] == ' ' || l[0] == '\t') && name != "" {
			f[name] += " " + strings.TrimSpace(l)
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			name = ""
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, seen := f[k]; seen {
			name = ""
			continue
		}
		name = k
		f[k] = strings.TrimSpace(v)
	}
	return f
}

func recipientGroup(f map[string]string, lines []string) (rawRecipient, bool) {
	status := firstWord(f["status"])
	action := dsn.Action(strings.ToLower(firstWord(f["action"])))
	switch action {
	case dsn.Failed, dsn.Delayed:
	case dsn.Delivered, dsn.Relayed, dsn.Expanded:
		return rawRecipient{}, false // not a failure
	default:
		// No or an unknown action: the status class tells (RFC 3464
		// §2.3.3 requires Action, but reports omit or misspell it).
		switch {
		case strings.HasPrefix(status, "2."):
			return rawRecipient{}, false
		case strings.HasPrefix(status, "4."):
			action = dsn.Delayed
		default:
			action = dsn.Failed
		}
	}
	rc := rawRecipient{
		addr:       typedAddress(f["original-recipient"]),
		final:      typedAddress(f["final-recipient"]),
		action:     action,
		status:     status,
		diagnostic: typedValue(f["diagnostic-code"]),
		remote:     f["remote-mta"],
		evidence:   strings.Join(lines, "\n"),
	}
	if rc.addr == "" {
		rc.addr = rc.final
	}
	return rc, true
}

// typedValue strips the type of a typed field ("smtp; 550 ...").
func typedValue(v string) string {
	if t, rest, ok := strings.Cut(v, ";"); ok && !strings.ContainsAny(t, " \t") {
		return strings.TrimSpace(rest)
	}
	return strings.TrimSpace(v)
}

// typedAddress reads an address field: "rfc822; user@example.org", or
// RFC 6533's "utf-8; ..." whose non-ASCII characters may be written
// as \x{HHHH} (RFC 6533 §3, embedded-unicode-char).
func typedAddress(v string) string {
	t, rest, ok := strings.Cut(v, ";")
	if !ok {
		return strings.TrimSpace(v)
	}
	rest = strings.TrimSpace(rest)
	if strings.EqualFold(strings.TrimSpace(t), "utf-8") {
		rest = unitext(rest)
	}
	return rest
}

// unitext decodes RFC 6533 \x{HHHH} escapes; a malformed escape is kept
// as written.
func unitext(s string) string {
	if !strings.Contains(s, `\x{`) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, `\x{`)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			b.WriteString(s[i:])
			return b.String()
		}
		hex := s[i+3 : i+j]
		n, err := strconv.ParseUint(hex, 16, 32)
		if err != nil || len(hex) < 2 || len(hex) > 6 || n > 0x10FFFF {
			b.WriteString(s[i : i+j+1])
		} else {
			b.WriteRune(rune(n))
		}
		s = s[i+j+1:]
	}
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}
