// Package render makes a list's copy of a post: what every member of the
// list receives. It runs once per post and list, in the expander, before
// the spool, and never per member: the copy is a new header and a layout
// over the post's bytes as received, so the body is stored once and
// never re-encoded.
//
// The copy's header replaces the post's (header.go): the poster's
// List-* and Precedence fields are replaced by the list's (RFC 2369
// List-Post, List-Help, List-Subscribe, List-Unsubscribe as mailto on
// LIST-request, List-Archive when archive_url is set, RFC 2919 List-Id,
// Precedence: list), Date and Message-ID are added when missing (as
// Postfix's cleanup does), the subject prefix is added unless the subject
// has it (a reply), and with a strict DMARC policy at the author's domain
// the From: is munged as Mailman 3 does. All header work is go-message's
// textproto: fields not changed are written back byte for byte.
//
// The body (mime.go) is the post's, unless the list adds a footer
// (appended to a single text/plain part, or as a new last part of a
// multipart/mixed, other structures being wrapped in one; never inside
// multipart/signed or encrypted mail, whose body stays byte-identical)
// or wraps the post for DMARC (the post, untouched, as a message/rfc822
// part). Either way the change is bytes before the post's body (Lead)
// and bytes inserted at one offset of it (Insert at InsertAt).
//
// With a DKIM key for the copy's From: domain or the list's domain the
// copy is signed (dkim.Keyring.Pick): the body hash is computed once,
// here, over the copy's body, and the signature heads the header.
package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"fanmail/dkim"
	"fanmail/dmarc"
	"fanmail/envelope"
	"fanmail/lists"
)

// Post is the post a copy is made of.
type Post struct {
	Header   []byte      // the post's header as received, through the empty line that ends it (if any)
	Body     io.ReaderAt // the whole post as received, header included
	Size     int64       // of Body
	QueueID  string      // names a Message-ID the post lacks
	Received time.Time   // dates a post that has no Date
	// Parsed is Header as Parse read it, when the caller has it: Render
	// then works on a copy of it instead of parsing Header again.
	Parsed *Parsed
}

// List is the list whose copy is made.
type List struct {
	Address  string // LIST@DOMAIN
	Settings lists.Settings
}

// Options are the copy's circumstances.
type Options struct {
	Hostname string        // the right side of a Message-ID fanmail adds
	DMARC    dmarc.Policy  // the policy of the author's domain
	Keys     *dkim.Keyring // nil: nothing is signed
	// Boundary returns a MIME boundary for a multipart fanmail makes;
	// nil draws a random one. Tests fix it.
	Boundary func() string
}

// Copy is a list's copy of a post: Header, then Lead, then the post's
// bytes from Skip to the end, with Insert put in at InsertAt.
type Copy struct {
	Header   []byte // the copy's header, ending with the empty line; DKIM-Signature first when signed
	Lead     []byte // body bytes before the post's
	Skip     int64  // bytes of the post the copy leaves out at its start: its header, or none when wrapped
	Insert   []byte // bytes put in at InsertAt; nil for none
	InsertAt int64  // an offset of the post, Skip <= InsertAt <= Size
	Signed   string // d= of the DKIM signature, "" if unsigned
	Munged   bool   // the From: was rewritten for DMARC
	Wrapped  bool   // the post travels as a message/rfc822 part
	Footer   bool   // the footer was added
	// Personal is what delivery makes each member's copy from, for a
	// list whose setting personalize is not off (personal.go). With
	// full, Header is unsigned and has no List-Unsubscribe: both come
	// per member.
	Personal envelope.Personal
}

// Size is the size of the whole copy for a post of size bytes.
func (c *Copy) Size(size int64) int64 {
	return int64(len(c.Header)+len(c.Lead)+len(c.Insert)) + size - c.Skip
}

// Body returns the copy's body (all but Header) over the post's bytes.
func (c *Copy) Body(post io.ReaderAt, size int64) io.Reader {
	return io.MultiReader(bytes.NewReader(c.Lead),
		io.NewSectionReader(post, c.Skip, c.InsertAt-c.Skip),
		bytes.NewReader(c.Insert),
		io.NewSectionReader(post, c.InsertAt, size-c.InsertAt))
}

// Reader returns the whole copy.
func (c *Copy) Reader(post io.ReaderAt, size int64) io.Reader {
	return io.MultiReader(bytes.NewReader(c.Header), c.Body(post, size))
}

// ErrBadHeader means the post's header cannot be parsed, so no copy can
// be rendered from it.
var ErrBadHeader = errors.New("message header does not parse")

// Render makes list's copy of p.
func Render(p Post, l List, o Options) (*Copy, error) {
	var h header
	var err error
	if p.Parsed != nil {
		h = p.Parsed.header.Copy()
	} else if h, err = parseHeader(p.Header); err != nil {
		return nil, err
	}
	if int64(len(p.Header)) > p.Size {
		return nil, fmt.Errorf("render: header of %d bytes in a post of %d", len(p.Header), p.Size)
	}
	if o.Boundary == nil {
		o.Boundary = randomBoundary
	}
	c := &Copy{Skip: int64(len(p.Header)), InsertAt: p.Size}
	fixup(&h, p, o.Hostname)
	author, _ := firstFrom(h)
	wrap := o.DMARC.Strict() && l.Settings.DMARC == lists.DMARCWrap && author != nil
	munge := o.DMARC.Strict() && l.Settings.DMARC == lists.DMARCMunge && author != nil
	footer := footerText(l.Settings.Footer)
	switch {
	case wrap:
		h, err = wrapPost(c, h, p, footer, o.Boundary())
		c.Wrapped, c.Footer = true, footer != ""
	case footer != "":
		c.Footer, err = addFooter(c, &h, p, footer, o.Boundary)
	}
	if err != nil {
		return nil, err
	}
	if munge || wrap {
		mungeFrom(&h, author, l.Address)
		c.Munged = true
	}
	prefixSubject(&h, l.Settings.SubjectPrefix)
	dropListFields(&h)
	mode := personalMode(l.Settings.Personalize)
	var hdr bytes.Buffer
	hdr.Grow(len(p.Header) + 1024)
	// With full, each member's List-Unsubscribe comes with its own
	// copy, signed with it.
	hdr.Write(listHeaderFields(l, mode != envelope.PersonalizeFull))
	if err := writeHeader(&hdr, h); err != nil {
		return nil, err
	}
	c.Header = hdr.Bytes()
	switch mode {
	case envelope.PersonalizeOff:
		err = sign(c, h, p, l, o.Keys)
	case envelope.PersonalizeVERP:
		if err = sign(c, h, p, l, o.Keys); err == nil {
			c.Personal = envelope.Personal{Mode: mode, Template: personalTemplate{list: l.Address}.encode()}
		}
	case envelope.PersonalizeFull:
		err = prepareFull(c, h, p, l, o.Keys)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// prepareFull makes the template of a full copy: the unsigned header,
// and the signing domain with the body hash, computed once here, so that
// each member's signature at delivery time reads no body.
func prepareFull(c *Copy, h header, p Post, l List, keys *dkim.Keyring) error {
	t := personalTemplate{list: l.Address, header: c.Header}
	if s := signer(h, l, keys); s != nil {
		bh, err := dkim.HashBody(c.Body(p.Body, p.Size))
		if err != nil {
			return fmt.Errorf("render: %w", err)
		}
		t.domain, t.bh = s.Domain(), bh
		c.Signed = s.Domain()
	}
	c.Personal = envelope.Personal{Mode: envelope.PersonalizeFull, Template: t.encode()}
	return nil
}

// signer is the signer for the copy's From: domain, or failing that the
// list's domain; nil when none has a key or the copy has no From.
func signer(h header, l List, keys *dkim.Keyring) *dkim.Signer {
	if keys == nil || !h.Has("From") {
		return nil // DKIM must sign From (RFC 6376 §5.4): without one, no signature
	}
	fromDomain := ""
	if a, _ := firstFrom(h); a != nil {
		fromDomain = domainOf(a.Address)
	}
	return keys.Pick(fromDomain, domainOf(l.Address))
}

// sign prepends the DKIM signature of the key that signs for the copy's
// From: domain, or failing that the list's domain, if any does.
func sign(c *Copy, h header, p Post, l List, keys *dkim.Keyring) error {
	s := signer(h, l, keys)
	if s == nil {
		return nil
	}
	bh, err := dkim.HashBody(c.Body(p.Body, p.Size))
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	sig, err := s.Sign(c.Header, bh)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	c.Header = append([]byte(sig), c.Header...)
	c.Signed = s.Domain()
	return nil
}
