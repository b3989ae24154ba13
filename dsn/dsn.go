// Package dsn composes delivery status notifications (RFC 3464): the
// bounce or delay warning fanmail sends to a message's envelope sender
// when the queue gives up on recipients or has been retrying them long.
// It sits beside the queue, which decides when a DSN is due; dsn only
// writes the message, as a multipart/report (RFC 6522) with a
// human-readable part, a message/delivery-status part and the original
// header as text/rfc822-headers (their RFC 6533 global variants when
// addresses or headers are UTF-8). The original body is never returned,
// and the header at most up to MaxHeaderBytes (Postfix's
// bounce_size_limit), so a DSN is never a way to make fanmail send a
// large message to a third party.
//
// Preconditions the caller keeps:
//   - Never compose a DSN for a message whose envelope sender is null
//     ("<>"): RFC 5321 §4.5.5 and RFC 3464 §2 forbid it, since the message
//     may itself be a DSN. Nor for a sender that is not an address, or is
//     the mail system itself (MAILER-DAEMON, the sender fanmail gives
//     mail it forwards for aliases without an owner): nobody reads it,
//     and a DSN there could only come back. Wanted reports all this;
//     Compose refuses it.
//   - Send the DSN itself with the null sender (MAIL FROM:<>), so it can
//     never cause another.
package dsn

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"

	"fanmail/address"
	"fanmail/envelope"
)

// ErrNullSender is returned by Compose for a message with the null
// envelope sender, which must never get a DSN.
var ErrNullSender = errors.New("dsn: no DSN for a message with the null sender")

// ErrUnwanted is returned by Compose for any other sender Wanted refuses.
var ErrUnwanted = errors.New("dsn: no DSN to this sender")

// MaxHeaderBytes bounds the original header a DSN returns; a longer one
// is cut at the last whole line that fits. Postfix's bounce_size_limit.
const MaxHeaderBytes = 50000

// Action is the RFC 3464 §2.3.3 action for one recipient.
type Action string

const (
	Failed    Action = "failed"
	Delayed   Action = "delayed"
	Delivered Action = "delivered"
	Relayed   Action = "relayed"
	Expanded  Action = "expanded"
)

// Report is one DSN about one message.
type Report struct {
	// ReportingMTA is this host's name, written "dns; NAME".
	ReportingMTA string
	// From is the DSN's From header; default "Mail Delivery System
	// <MAILER-DAEMON@ReportingMTA>".
	From string
	// To is the original message's envelope sender, who gets the DSN.
	To string
	// EnvelopeID is the original ENVID (RFC 3461), if one was given.
	EnvelopeID string
	// ArrivalDate is when fanmail accepted the original message.
	ArrivalDate time.Time
	// Date of the DSN; zero means now.
	Date time.Time
	// MessageID of the DSN, without angle brackets; empty generates one.
	MessageID string
	// Header is the original message's header section, as received.
	Header []byte
	// Recipients the report is about, at least one.
	Recipients []Recipient
}

// Recipient is one recipient's per-recipient fields (RFC 3464 §2.3).
type Recipient struct {
	FinalRecipient    string // the address delivery was attempted to
	OriginalRecipient string // the address as the sender gave it (ORCPT), if known
	Action            Action
	// Reply is what decided the recipient's fate: its Enhanced code is the
	// Status field (empty means 5.0.0 for a failure and 4.0.0 otherwise),
	// Host the Remote-MTA; Code 0 means the condition was found locally
	// (DNS, connection), described by Text alone.
	Reply envelope.Reply
	// LastAttempt is when delivery was last tried; zero to omit.
	LastAttempt time.Time
	// WillRetryUntil, for Delayed, is when the queue will give up.
	WillRetryUntil time.Time
}

// Wanted reports whether a message with this envelope sender may get a
// DSN: not for the null sender, a sender that is not an address, or the
// mail system's own MAILER-DAEMON.
func Wanted(envelopeSender string) bool { return unwanted(envelopeSender) == nil }

func unwanted(sender string) error {
	s := strings.Trim(sender, "<> ")
	if s == "" {
		return ErrNullSender
	}
	m, err := address.Parse(s)
	if err != nil {
		return fmt.Errorf("%w: %q is not an address: %v", ErrUnwanted, sender, err)
	}
	if strings.EqualFold(m.Local, "mailer-daemon") {
		return fmt.Errorf("%w: %s is the mail system itself", ErrUnwanted, s)
	}
	return nil
}

// Compose writes the DSN described by r as a complete message.
func Compose(r Report) ([]byte, error) {
	if err := unwanted(r.To); err != nil {
		return nil, err
	}
	if len(r.Recipients) == 0 {
		return nil, errors.New("dsn: no recipients to report on")
	}
	if r.ReportingMTA == "" || strings.ContainsAny(r.ReportingMTA, " \t\r\n") {
		return nil, fmt.Errorf("dsn: reporting MTA %q: must be one host name", r.ReportingMTA)
	}
	for _, rc := range r.Recipients {
		if rc.FinalRecipient == "" {
			return nil, errors.New("dsn: recipient without an address")
		}
		switch rc.Action {
		case Failed, Delayed, Delivered, Relayed, Expanded:
		default:
			return nil, fmt.Errorf("dsn: recipient %s: unknown action %q", rc.FinalRecipient, rc.Action)
		}
	}
	if r.Date.IsZero() {
		r.Date = time.Now()
	}
	if r.From == "" {
		r.From = "Mail Delivery System <MAILER-DAEMON@" + r.ReportingMTA + ">"
	}
	if r.MessageID == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		r.MessageID = fmt.Sprintf("%d.%s@%s", r.Date.Unix(), hex.EncodeToString(b[:]), r.ReportingMTA)
	}

	var h message.Header
	h.Set("Date", r.Date.Format(time.RFC1123Z))
	h.Set("From", r.From)
	h.Set("To", "<"+strings.Trim(r.To, "<>")+">")
	h.Set("Subject", subject(r.Recipients))
	h.Set("Message-ID", "<"+r.MessageID+">")
	// RFC 3834 §5: automatic replies must not trigger further ones.
	h.Set("Auto-Submitted", "auto-replied")
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status"})

	var buf bytes.Buffer
	mw, err := message.CreateWriter(&buf, h)
	if err != nil {
		return nil, fmt.Errorf("dsn: write header: %w", err)
	}
	status, headers := statusPart(r), originalHeader(r.Header)
	statusType, statusCTE, headersType := "message/delivery-status", "7bit", "text/rfc822-headers"
	// RFC 6533 §6: internationalized addresses or headers need the global
	// types, which allow UTF-8.
	if !isASCII(status) {
		statusType, statusCTE = "message/global-delivery-status", "8bit"
	}
	if !isASCII(headers) {
		headersType = "message/global-headers"
	}
	parts := []struct {
		ctype  string
		params map[string]string
		cte    string
		body   []byte
	}{
		{"text/plain", map[string]string{"charset": "utf-8"}, "8bit", humanPart(r)},
		{statusType, nil, statusCTE, status},
		{headersType, nil, "8bit", headers},
	}
	for _, p := range parts {
		var ph message.Header
		ph.SetContentType(p.ctype, p.params)
		ph.Set("Content-Transfer-Encoding", p.cte)
		pw, err := mw.CreatePart(ph)
		if err != nil {
			return nil, fmt.Errorf("dsn: create %s part: %w", p.ctype, err)
		}
		if _, err := pw.Write(p.body); err != nil {
			return nil, fmt.Errorf("dsn: write %s part: %w", p.ctype, err)
		}
		if err := pw.Close(); err != nil {
			return nil, fmt.Errorf("dsn: close %s part: %w", p.ctype, err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("dsn: close message: %w", err)
	}
	return buf.Bytes(), nil
}

func subject(rs []Recipient) string {
	failed, delayed := 0, 0
	for _, r := range rs {
		switch r.Action {
		case Failed:
			failed++
		case Delayed:
			delayed++
		}
	}
	switch {
	case failed == len(rs):
		return "Undelivered Mail Returned to Sender"
	case delayed == len(rs):
		return "Delayed Mail (still being retried)"
	}
	return "Delivery Status Notification"
}

func (rc Recipient) status() string {
	if rc.Reply.Enhanced != "" {
		return rc.Reply.Enhanced
	}
	if rc.Action == Failed {
		return "5.0.0"
	}
	if rc.Action == Delayed {
		return "4.0.0"
	}
	return "2.0.0"
}

func (rc Recipient) reply() string {
	if rc.Reply.Code == 0 {
		return oneLine(rc.Reply.Text)
	}
	return oneLine(rc.Reply.String())
}

// humanPart explains the report in words, one paragraph per recipient.
func humanPart(r Report) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at host %s.\r\n\r\n", r.ReportingMTA)
	switch subject(r.Recipients) {
	case "Undelivered Mail Returned to Sender":
		b.WriteString("Your message could not be delivered to one or more recipients.\r\nIt has not been and will not be delivered to them.\r\n")
	case "Delayed Mail (still being retried)":
		b.WriteString("Your message has not yet been delivered to one or more recipients.\r\nThe mail system will keep trying; you do not need to resend it.\r\n")
	default:
		b.WriteString("This is a report on the delivery of your message.\r\n")
	}
	for _, rc := range r.Recipients {
		fmt.Fprintf(&b, "\r\n<%s>: %s", rc.FinalRecipient, rc.Action)
		if rc.Reply.Host != "" {
			fmt.Fprintf(&b, ", host %s said", rc.Reply.Host)
		}
		fmt.Fprintf(&b, ":\r\n    %s\r\n", rc.reply())
		if rc.Action == Delayed && !rc.WillRetryUntil.IsZero() {
			fmt.Fprintf(&b, "    Delivery will be retried until %s.\r\n", rc.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
	return []byte(b.String())
}

// statusPart is the machine-readable message/delivery-status body: the
// per-message fields, then one block per recipient (RFC 3464 §2.1).
func statusPart(r Report) []byte {
	var b strings.Builder
	field := func(name, value string) {
		if value != "" {
			b.WriteString(name + ": " + oneLine(value) + "\r\n")
		}
	}
	field("Reporting-MTA", "dns; "+r.ReportingMTA)
	field("Original-Envelope-Id", r.EnvelopeID)
	if !r.ArrivalDate.IsZero() {
		field("Arrival-Date", r.ArrivalDate.Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		b.WriteString("\r\n")
		if rc.OriginalRecipient != "" {
			field("Original-Recipient", addressType(rc.OriginalRecipient))
		}
		field("Final-Recipient", addressType(rc.FinalRecipient))
		field("Action", string(rc.Action))
		field("Status", rc.status())
		if rc.Reply.Host != "" {
			field("Remote-MTA", "dns; "+rc.Reply.Host)
		}
		if rc.Reply.Code != 0 {
			field("Diagnostic-Code", "smtp; "+rc.reply())
		}
		if !rc.LastAttempt.IsZero() {
			field("Last-Attempt-Date", rc.LastAttempt.Format(time.RFC1123Z))
		}
		if rc.Action == Delayed && !rc.WillRetryUntil.IsZero() {
			field("Will-Retry-Until", rc.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
	return []byte(b.String())
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// addressType prefixes an address with its RFC 3464 address type:
// rfc822, or utf-8 (RFC 6533) for an internationalized one.
func addressType(addr string) string {
	for i := 0; i < len(addr); i++ {
		if addr[i] >= 0x80 {
			return "utf-8; " + addr
		}
	}
	return "rfc822; " + addr
}

// oneLine makes text safe for a header-like field: no line breaks, and
// short enough for SMTP's 998-octet line limit.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 900 {
		s = s[:900] + "..."
	}
	return s
}

// originalHeader returns the header section with CRLF line ends and
// without the blank line that ends it, cut after the last whole line
// within MaxHeaderBytes.
func originalHeader(h []byte) []byte {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(h))
	sc.Buffer(nil, MaxHeaderBytes+2)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || b.Len()+len(line)+2 > MaxHeaderBytes {
			break
		}
		b.WriteString(line + "\r\n")
	}
	return b.Bytes()
}

// HeaderOf reads a message's header section from r, up to and without
// the blank line, for Report.Header; it reads no more of a longer header
// than a DSN returns.
func HeaderOf(r io.Reader) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, MaxHeaderBytes+1))
	var b bytes.Buffer
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimRight(line, "\r\n")) == 0 && (len(line) > 0 || err != nil) {
			if err != nil && err != io.EOF {
				return nil, fmt.Errorf("dsn: read header: %w", err)
			}
			return b.Bytes(), nil
		}
		b.Write(line)
		if err != nil {
			if err == io.EOF {
				return b.Bytes(), nil
			}
			return nil, fmt.Errorf("dsn: read header: %w", err)
		}
	}
}
