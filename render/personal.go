package render

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"fanmail/bounces"
	"fanmail/dkim"
	"fanmail/envelope"
	"fanmail/listaddr"
	"fanmail/lists"
	"fanmail/unsubscribe"
)

// Per-member copies (setting personalize). The copy is still rendered
// once per post and list; what differs per member is made at delivery
// time by Members from a template the expander stores with the list's
// part of the post (envelope.Personal):
//
//   - verp: the member's envelope sender LIST-bounces+LOCAL=DOMAIN@LISTDOMAIN
//     (bounces.EncodeVERP); a member whose VERP address would be too long
//     keeps the list's plain bounce address.
//   - full: in addition, List-Unsubscribe with the member's own one-click
//     link (RFC 8058: BASE/u/TOKEN and List-Unsubscribe-Post) when a base
//     URL is configured, else the list's mailto alone, and a DKIM
//     signature per member that covers it. The copy's header is stored
//     unsigned and without List-Unsubscribe; the body hash is computed
//     here, once per post, and kept in the template, so delivery signs a
//     member's header without reading the body.
//
// The template is small: a format byte, the list address, the signing
// domain and body hash, and (full only) the copy's header to sign.

const templateFormat = 1

// personalTemplate is what a template holds.
type personalTemplate struct {
	list   string
	domain string        // d= of the per-member signature; "" for none
	bh     dkim.BodyHash // of the copy's body, when domain is set
	header []byte        // the copy's header (full), which the signature covers
}

func (t personalTemplate) encode() []byte {
	b := make([]byte, 0, 48+len(t.list)+len(t.domain)+len(t.header))
	b = append(b, templateFormat)
	str := func(s []byte) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str([]byte(t.list))
	str([]byte(t.domain))
	if t.domain != "" {
		b = append(b, t.bh[:]...)
	}
	str(t.header)
	return b
}

var errTemplate = errors.New("malformed per-member template")

func decodeTemplate(b []byte) (personalTemplate, error) {
	var t personalTemplate
	if len(b) == 0 || b[0] != templateFormat {
		return t, errTemplate
	}
	b = b[1:]
	str := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		s := b[k : k+int(n)]
		b = b[k+int(n):]
		return s, true
	}
	list, ok1 := str()
	domain, ok2 := str()
	if !ok1 || !ok2 {
		return t, errTemplate
	}
	t.list, t.domain = string(list), string(domain)
	if t.domain != "" {
		if len(b) < len(t.bh) {
			return t, errTemplate
		}
		copy(t.bh[:], b)
		b = b[len(t.bh):]
	}
	header, ok := str()
	if !ok || len(b) != 0 {
		return t, errTemplate
	}
	t.header = header
	return t, nil
}

// personalMode maps a list's setting onto the spool's mode.
func personalMode(p lists.Personalize) envelope.Personalize {
	switch p {
	case lists.PersonalizeVERP:
		return envelope.PersonalizeVERP
	case lists.PersonalizeFull:
		return envelope.PersonalizeFull
	}
	return envelope.PersonalizeOff
}

// unsubscribeMailto is the list's mailto unsubscribe URI, in <>.
func unsubscribeMailto(list string) string {
	return "<mailto:" + listaddr.Of(list, listaddr.Request, "") + "?subject=" + url.QueryEscape("unsubscribe") + ">"
}

// Members makes each member's copy at delivery time (it is the
// envelope.Personalizer fanmail's delivery agent uses). Its fields may
// be nil: without Keys nothing is signed per member, and without
// Unsubscribe or BaseURL the List-Unsubscribe field has the list's
// mailto alone.
type Members struct {
	Keys        *dkim.Keyring
	Unsubscribe *unsubscribe.Keyring
	BaseURL     string // as unsubscribe.ParseBaseURL returns it
}

// Member returns rcpt's sender and header fields for p's copy; sender is
// the envelope's (the list's bounce address), used when VERP cannot
// encode the member.
func (ms *Members) Member(p envelope.Personal, sender, rcpt string) (envelope.MemberCopy, error) {
	t, err := decodeTemplate(p.Template)
	if err != nil {
		return envelope.MemberCopy{}, err
	}
	out := envelope.MemberCopy{Sender: sender}
	if v, err := bounces.EncodeVERP(t.list, rcpt); err == nil {
		out.Sender = v
	}
	if p.Mode != envelope.PersonalizeFull {
		return out, nil
	}
	var fields strings.Builder
	fields.Grow(400)
	fields.WriteString("List-Unsubscribe: ")
	oneClick := false
	if ms.Unsubscribe != nil && ms.BaseURL != "" {
		if tok, err := ms.Unsubscribe.Mint(t.list, rcpt); err == nil {
			// RFC 8058 §3.1: the https URI, and the mailto for clients
			// that do not do one-click.
			fields.WriteString("<" + unsubscribe.URL(ms.BaseURL, tok) + ">,\r\n ")
			oneClick = true
		}
	}
	fields.WriteString(unsubscribeMailto(t.list) + "\r\n")
	if oneClick {
		fields.WriteString("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
	}
	out.Header = []byte(fields.String())
	if t.domain == "" || ms.Keys == nil {
		return out, nil
	}
	s := ms.Keys.For(t.domain)
	if s == nil {
		return out, nil // the key is gone since the post was rendered: unsigned, as without one
	}
	signed := make([]byte, 0, len(out.Header)+len(t.header))
	signed = append(append(signed, out.Header...), t.header...)
	sig, err := s.Sign(signed, t.bh)
	if err != nil {
		return envelope.MemberCopy{}, fmt.Errorf("sign the copy for %s: %w", rcpt, err)
	}
	out.Header = append([]byte(sig), out.Header...)
	return out, nil
}
