package render

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strings"
	"sync"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decodes encoded words in any charset
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"fanmail/listaddr"
)

// header is the go-message header a copy is made with: fields read keep
// their bytes, fields added go on top.
type header = textproto.Header

func parseHeader(raw []byte) (header, error) {
	r := headerReaders.Get().(*headerReader)
	r.src.Reset(raw)
	r.buf.Reset(&r.src)
	h, err := textproto.ReadHeader(r.buf)
	r.src.Reset(nil)
	r.buf.Reset(&r.src)
	headerReaders.Put(r)
	if err != nil && !errors.Is(err, io.EOF) { // EOF: a post with no body, and no empty line
		return h, fmt.Errorf("%w: %v", ErrBadHeader, err)
	}
	return h, nil
}

// headerReader is the reader textproto.ReadHeader needs. Every post's
// header is parsed on the way to its 250, and a new 4 KiB bufio buffer
// each time (allocated and zeroed) was a visible share of accepting a
// small post, so they are reused.
type headerReader struct {
	src bytes.Reader
	buf *bufio.Reader
}

var headerReaders = sync.Pool{New: func() any {
	r := &headerReader{}
	r.buf = bufio.NewReader(&r.src)
	return r
}}

func writeHeader(w io.Writer, h header) error {
	if err := textproto.WriteHeader(w, h); err != nil {
		return fmt.Errorf("render: write header: %w", err)
	}
	return nil
}

// replacedFields are the fields of the post a list's own replace: the
// RFC 2369 and 2919 fields, and Precedence.
var replacedFields = []string{
	"List-Id", "List-Post", "List-Help", "List-Subscribe", "List-Unsubscribe",
	"List-Unsubscribe-Post", "List-Archive", "List-Owner", "Precedence",
}

// fixup adds the Date and Message-ID a post lacks, as Postfix's cleanup
// does: Date is when the post arrived, and the Message-ID is made of its
// queue ID, so every copy of the post (every list it went to, and a
// held post distributed days later) carries the same one.
func fixup(h *header, p Post, hostname string) {
	for _, f := range fixupFields(*h, p, hostname) {
		h.AddRaw(f)
	}
}

func fixupFields(h header, p Post, hostname string) [][]byte {
	var out [][]byte
	if !h.Has("Date") {
		out = append(out, []byte("Date: "+p.Received.Format(dateLayout)+"\r\n"))
	}
	if !h.Has("Message-Id") {
		out = append(out, []byte("Message-ID: <"+p.QueueID+"@"+hostname+">\r\n"))
	}
	return out
}

// dateLayout is RFC 5322 §3.3's date-time.
const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

// FixupFields returns the Date and Message-ID fields Render would add
// to a post with this header, for the copies that keep the post's own
// header (mail forwarded to an owner, alias expansions): prepended, they
// give those copies the same Date and Message-ID as the list's. A header
// that does not parse gets none.
func FixupFields(raw []byte, p Post, hostname string) []byte {
	h, err := parseHeader(raw)
	if err != nil {
		return nil
	}
	f := fixupFields(h, p, hostname)
	if len(f) == 0 {
		return nil
	}
	return bytes.Join(f, nil)
}

// firstFrom returns the first mailbox of From, with the rest of the
// field's mailboxes.
func firstFrom(h header) (*mail.Address, []*mail.Address) {
	mh := mailHeader(h)
	addrs, err := mh.AddressList("From")
	if err != nil || len(addrs) == 0 {
		return nil, nil
	}
	return addrs[0], addrs
}

// mailHeader gives h go-message's mail methods (addresses, subject).
func mailHeader(h header) mail.Header {
	return mail.Header{Header: message.Header{Header: h}}
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// mungeFrom rewrites From for a post whose author's domain has a strict
// DMARC policy, as Mailman 3 does: "Author via LIST" <LIST@DOMAIN>, and
// every original From mailbox added to Reply-To (after those already
// there, once each), so replies still reach the author.
func mungeFrom(h *header, author *mail.Address, list string) {
	mh := mailHeader(*h)
	_, from := firstFrom(*h)
	name := author.Name
	if name == "" {
		name = author.Address
	}
	local, _, _ := strings.Cut(list, "@")
	replyTo, err := mh.AddressList("Reply-To")
	if err != nil {
		replyTo = nil // unreadable: replaced by the author
	}
	for _, a := range from {
		if !containsAddress(replyTo, a.Address) {
			replyTo = append(replyTo, a)
		}
	}
	mh.SetAddressList("From", []*mail.Address{{Name: name + " via " + local, Address: list}})
	mh.SetAddressList("Reply-To", replyTo)
	*h = mh.Header.Header
}

func containsAddress(l []*mail.Address, addr string) bool {
	for _, a := range l {
		if strings.EqualFold(a.Address, addr) {
			return true
		}
	}
	return false
}

// prefixSubject puts prefix before the subject, unless the subject has
// it already anywhere (a reply: "Re: [announce] ..."), compared without
// regard to case after decoding encoded words. The rest of the subject
// is kept as written; a non-ASCII prefix is encoded with its space, so
// that an encoded word after it keeps the space between them.
func prefixSubject(h *header, prefix string) {
	if prefix == "" {
		return
	}
	raw := h.Get("Subject")
	mh := mailHeader(*h)
	decoded, err := mh.Subject()
	if err != nil {
		decoded = raw
	}
	if strings.Contains(strings.ToLower(decoded), strings.ToLower(prefix)) {
		return
	}
	lead := prefix + " "
	if !isASCII(prefix) {
		// Between two encoded words a space is dropped (RFC 2047 §6.2),
		// so it goes inside; before plain text it stays outside.
		if strings.HasPrefix(raw, "=?") {
			lead = mime.QEncoding.Encode("utf-8", prefix+" ") + " "
		} else {
			lead = mime.QEncoding.Encode("utf-8", prefix) + " "
		}
	}
	h.Set("Subject", strings.TrimSpace(lead+raw))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// dropListFields removes the post's own list fields, which the list's
// replace.
func dropListFields(h *header) {
	for _, f := range replacedFields {
		h.Del(f)
	}
}

// listHeaderFields returns the list's own fields, which head the copy's
// header: List-Id (RFC 2919), the RFC 2369 fields (mailto on
// LIST-request with a subject that says what to do, and List-Archive
// when the list has an archive) and Precedence: list. List-Unsubscribe
// is left out when each member's copy gets its own. They are made as
// bytes rather than added to the parsed header, which made them a third
// of the cost of rendering a small post's header.
func listHeaderFields(l List, unsubscribe bool) []byte {
	request := listaddr.Of(l.Address, listaddr.Request, "")
	mailto := func(subject string) string {
		return "<mailto:" + request + "?subject=" + url.QueryEscape(subject) + ">"
	}
	b := make([]byte, 0, 512)
	b = appendField(b, "List-Id", "<"+listaddr.ListID(l.Address)+">")
	b = appendField(b, "List-Post", "<mailto:"+l.Address+">")
	b = appendField(b, "List-Help", mailto("help"))
	b = appendField(b, "List-Subscribe", mailto("subscribe"))
	if unsubscribe {
		b = appendField(b, "List-Unsubscribe", mailto("unsubscribe"))
	}
	if l.Settings.ArchiveURL != "" {
		b = appendField(b, "List-Archive", "<"+l.Settings.ArchiveURL+">")
	}
	return appendField(b, "Precedence", "list")
}

// appendField appends the field k: v as go-message writes it: on one
// line when the value has no white space to fold at and fits in a line
// (the list fields always do), and otherwise folded by go-message.
func appendField(b []byte, k, v string) []byte {
	if len(k)+2+len(v) <= maxLineLen && !strings.ContainsAny(v, " \t\r\n") {
		b = append(b, k...)
		b = append(b, ": "...)
		b = append(b, v...)
		return append(b, "\r\n"...)
	}
	var h header
	h.Add(k, v)
	var w bytes.Buffer
	if err := textproto.WriteHeader(&w, h); err != nil {
		return append(b, k+": "+v+"\r\n"...) // WriteHeader into memory does not fail
	}
	return append(b, bytes.TrimSuffix(w.Bytes(), []byte("\r\n"))...) // the empty line that ends a header
}

// maxLineLen is RFC 5322's limit on a line, without its CRLF, which
// go-message folds at when a value has nowhere better to fold.
const maxLineLen = 998
