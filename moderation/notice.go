package moderation

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"

	"fanmail/listaddr"
	"fanmail/listmail"
	"fanmail/lists"
)

// Notices are mail fanmail writes: to each moderator when a post is
// held, and to the poster when a moderator rejects one. They are
// composed with go-message (a multipart/mixed: a text part, then the
// post as a message/rfc822 part with its header intact), signed when a
// key signs for the list's domain, and queued in the control group from
// the list's bounce address, like a DSN.

// notice is one message to compose.
type notice struct {
	list     string // LIST@DOMAIN
	to       string
	subject  string
	replyTo  string // "" for none
	auto     string // Auto-Submitted (RFC 3834): auto-generated or auto-replied
	text     string // the text part, lines ending in "\n"
	post     io.Reader
	id       string // Message-ID, without <>
	date     time.Time
	eightBit bool // the post has 8-bit content
}

// compose writes n as a message.
func compose(n notice) ([]byte, error) {
	h := listmail.Heading{List: n.list, From: listaddr.Owner, Name: "moderation", To: n.to, ReplyTo: n.replyTo,
		Subject: n.subject, Auto: n.auto, ID: n.id, Date: n.date}.Header()
	h.SetContentType("multipart/mixed", nil)

	var b bytes.Buffer
	w, err := message.CreateWriter(&b, h.Header)
	if err != nil {
		return nil, fmt.Errorf("compose notice: %w", err)
	}
	var th message.Header
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Transfer-Encoding", "quoted-printable")
	tw, err := w.CreatePart(th)
	if err != nil {
		return nil, fmt.Errorf("compose notice: %w", err)
	}
	if _, err := io.WriteString(tw, strings.ReplaceAll(n.text, "\n", "\r\n")); err != nil {
		return nil, fmt.Errorf("compose notice: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("compose notice: %w", err)
	}
	var ph message.Header
	ph.SetContentType("message/rfc822", nil)
	ph.Set("Content-Disposition", "inline")
	if n.eightBit {
		ph.Set("Content-Transfer-Encoding", "8bit") // message/rfc822 is never encoded (RFC 2046 §5.2.1)
	}
	pw, err := w.CreatePart(ph)
	if err != nil {
		return nil, fmt.Errorf("compose notice: %w", err)
	}
	if _, err := io.Copy(pw, n.post); err != nil {
		return nil, fmt.Errorf("compose notice: read post: %w", err)
	}
	if err := pw.Close(); err != nil {
		return nil, fmt.Errorf("compose notice: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("compose notice: %w", err)
	}
	return b.Bytes(), nil
}

// moderatorText is the text part of a moderator's notice.
func moderatorText(p lists.Post, token string) string {
	approve := listaddr.Of(p.List, listaddr.Approve, token)
	reject := listaddr.Of(p.List, listaddr.Reject, token)
	from := p.From
	if from == "" {
		from = "(no readable From:)"
	}
	return fmt.Sprintf(`A post to %s is held for a moderator: %s.

  From:     %s
  Sender:   %s
  Subject:  %s
  Size:     %d bytes
  Received: %s

To approve it, reply to this message: the reply goes to
  %s
To reject it, send any message to
  %s
Either address works once, and only for this post.

On the server: fanmail mod approve %d, fanmail mod reject %d [--reason TEXT]
or fanmail mod discard %d.

Unless a moderator acts, the post is discarded on %s.
The post is attached.
`, p.List, p.Reason, from, senderText(p.Sender), p.Subject, p.Size, p.Received.UTC().Format(time.RFC1123Z),
		approve, reject, p.ID, p.ID, p.ID, p.Expires.UTC().Format(time.RFC1123Z))
}

// rejectText is the text part of the notice to a rejected poster.
func rejectText(p lists.Post) string {
	reason := p.Note
	if reason == "" {
		reason = "(no reason given)"
	}
	return fmt.Sprintf(`Your post to %s was not distributed: a moderator rejected it.

  Reason:   %s
  Subject:  %s
  Received: %s

Your post is attached. For questions, write to %s.
`, p.List, reason, p.Subject, p.Received.UTC().Format(time.RFC1123Z), listaddr.Of(p.List, listaddr.Owner, ""))
}

func senderText(s string) string {
	if s == "" {
		return "<> (the null sender)"
	}
	return s
}

// has8bit reports whether b has a byte outside US-ASCII.
func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
