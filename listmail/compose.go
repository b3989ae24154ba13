package listmail

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"fanmail/dkim"
	"fanmail/envelope"
	"fanmail/expander"
	"fanmail/listaddr"
	"fanmail/queuegroups"
)

// outgoing is one message listmail sends: plain text, from one of the
// list's addresses, queued in the control group from the list's bounce
// address (so its bounce comes back here), signed when a key signs for
// the list's domain.
type outgoing struct {
	list    string
	from    listaddr.Role // Request for answers, Owner for notices
	to      string
	subject string
	replyTo string // "" for none
	auto    string // Auto-Submitted (RFC 3834): auto-replied or auto-generated
	text    string // lines end in "\n"
}

// send composes and queues o, and returns its queue ID.
func (s *Service) send(ctx context.Context, o outgoing) (string, error) {
	if s.cfg.Queue == nil {
		return "", errNoQueue
	}
	qid := s.cfg.IDs.Next()
	now := s.cfg.Now()
	msg, err := compose(o, qid+"@"+s.cfg.Hostname, now)
	if err != nil {
		return "", err
	}
	if err := Send(ctx, s.cfg.Queue, s.cfg.Keys, o.list, o.to, qid, now, msg); err != nil {
		return "", err
	}
	return qid, nil
}

// Send queues msg, which fanmail wrote itself on behalf of list, as
// message qid received at now: signed when a key signs for the list's
// domain, in the control group, from the list's bounce address (so its
// bounce comes back to the list) to the one recipient to. Mail a list
// writes leaves this way: listmail's answers and notices, and the
// moderation runner's notices.
func Send(ctx context.Context, q Queue, keys *dkim.Keyring, list, to, qid string, now time.Time, msg []byte) error {
	signed, err := keys.For(domainOf(list)).SignMessage(msg)
	if err != nil {
		return fmt.Errorf("sign mail of %s: %w", list, err)
	}
	m := &queuegroups.Message{ID: qid, Received: now, Body: envelope.Bytes(signed), Parts: []queuegroups.Part{{
		Envelopes: []envelope.Envelope{{Sender: expander.BounceAddress(list), Group: queuegroups.ControlGroup,
			Domain: domainOf(to), Recipients: []string{to}}},
	}}}
	if err := q.Enqueue(ctx, m); err != nil {
		return fmt.Errorf("queue mail to %s: %w", to, err)
	}
	return nil
}

// Heading is what the header of a message a list writes says.
type Heading struct {
	List    string        // LIST@DOMAIN
	From    listaddr.Role // which of the list's addresses it comes from
	Name    string        // the sender's role after the list's name in From ("owner"); "" for none
	To      string
	ReplyTo string // "" for none
	Subject string
	Auto    string // Auto-Submitted (RFC 3834): auto-replied or auto-generated
	ID      string // Message-ID, without <>
	Date    time.Time
}

// Header returns the header of mail a list writes, content type aside:
// Date, Message-ID, From (the list's address, named after the list),
// To, Reply-To, Subject, Auto-Submitted and List-Id. listmail's answers
// and the moderation runner's notices both start from it.
func (hd Heading) Header() mail.Header {
	var h mail.Header
	h.SetDate(hd.Date)
	h.SetMessageID(hd.ID)
	name, _, _ := strings.Cut(hd.List, "@")
	if hd.Name != "" {
		name += " " + hd.Name
	}
	h.SetAddressList("From", []*mail.Address{{Name: name, Address: listaddr.Of(hd.List, hd.From, "")}})
	h.SetAddressList("To", []*mail.Address{{Address: hd.To}})
	if hd.ReplyTo != "" {
		h.SetAddressList("Reply-To", []*mail.Address{{Address: hd.ReplyTo}})
	}
	h.SetSubject(hd.Subject)
	h.Set("Auto-Submitted", hd.Auto)
	h.Set("List-Id", "<"+listaddr.ListID(hd.List)+">")
	return h
}

func compose(o outgoing, id string, date time.Time) ([]byte, error) {
	var role string
	if o.from == listaddr.Owner {
		role = "owner"
	}
	h := Heading{List: o.list, From: o.from, Name: role, To: o.to, ReplyTo: o.replyTo, Subject: o.subject, Auto: o.auto, ID: id, Date: date}.Header()
	h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	var b bytes.Buffer
	w, err := message.CreateWriter(&b, h.Header)
	if err != nil {
		return nil, fmt.Errorf("compose mail to %s: %w", o.to, err)
	}
	if _, err := io.WriteString(w, strings.ReplaceAll(o.text, "\n", "\r\n")); err != nil {
		return nil, fmt.Errorf("compose mail to %s: %w", o.to, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("compose mail to %s: %w", o.to, err)
	}
	return b.Bytes(), nil
}
