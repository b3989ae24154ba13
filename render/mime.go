package render

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"strings"
)

// The body of a copy: the post's, or the post's with a footer, or the
// post wrapped whole. Nothing of the post is decoded or re-encoded; a
// change is bytes before the post's body and bytes put in at one offset.

// footerText returns the footer as CRLF lines, each ended, or "".
func footerText(f string) string {
	f = strings.TrimRight(strings.ReplaceAll(f, "\r\n", "\n"), "\n")
	if strings.TrimSpace(f) == "" {
		return ""
	}
	return strings.ReplaceAll(f, "\n", "\r\n") + "\r\n"
}

// contentFields are the fields that describe a MIME entity's content:
// when a post becomes the first part of a multipart, they go with it.
var contentFields = map[string]bool{
	"Content-Type": true, "Content-Transfer-Encoding": true, "Content-Disposition": true,
	"Content-Description": true, "Content-Id": true, "Content-Language": true, "Content-Md5": true,
}

// sealed are the types whose body must not change: signed and encrypted
// mail (RFC 1847, S/MIME, PGP/MIME).
var sealed = map[string]bool{
	"multipart/signed": true, "multipart/encrypted": true,
	"application/pkcs7-mime": true, "application/x-pkcs7-mime": true,
	"application/pgp-encrypted": true, "application/pgp-signature": true,
}

// addFooter adds the footer to the copy: appended to a single text/plain
// part it can be appended to as it is, as a new last part of a
// multipart/mixed, or, for anything else, after the post made the first
// part of a new multipart/mixed. Signed and encrypted mail, and a body
// whose structure cannot be read, are left as they are (false).
func addFooter(c *Copy, h *header, p Post, footer string, boundary func() string) (bool, error) {
	ctype, params, err := contentType(*h)
	if err != nil || sealed[ctype] {
		return false, nil
	}
	switch {
	case ctype == "text/plain" && appendable(*h, params["charset"], footer):
		ends, err := endsInNewline(p)
		if err != nil {
			return false, err
		}
		if !ends {
			c.Insert = []byte("\r\n")
		}
		c.Insert = append(c.Insert, footer...)
		return true, nil
	case ctype == "multipart/mixed":
		b := params["boundary"]
		if b == "" {
			return false, nil
		}
		at, err := closingDelimiter(p, b)
		if err != nil || at < 0 {
			return false, err
		}
		c.InsertAt = at
		c.Insert = append([]byte("--"+b+"\r\n"), footerPart(footer)...)
		return true, nil
	case strings.HasPrefix(ctype, "multipart/") && params["boundary"] == "":
		return false, nil // a multipart that cannot be read: sent as it came
	}
	b := boundary()
	var part bytes.Buffer
	fields := h.Fields()
	for fields.Next() {
		if contentFields[fields.Key()] {
			raw, err := fields.Raw()
			if err != nil {
				return false, fmt.Errorf("render: %w", err)
			}
			part.Write(raw)
		}
	}
	for k := range contentFields {
		h.Del(k)
	}
	setMultipart(h, b)
	c.Lead = []byte("This is a multi-part message in MIME format.\r\n--" + b + "\r\n" + part.String() + "\r\n")
	c.Insert = append([]byte("\r\n--"+b+"\r\n"), footerPart(footer)...)
	c.Insert = append(c.Insert, "--"+b+"--\r\n"...)
	return true, nil
}

// wrapPost makes the copy a multipart/mixed whose part is the post as it
// arrived (message/rfc822), for a post whose author's domain forbids
// its From: to be sent by others (DMARC). The outer header keeps the
// fields a reader needs (From, munged by the caller; Reply-To, To, Cc,
// Subject, Date, Message-ID, In-Reply-To, References); the rest stay
// inside with the post. The footer, if any, is a part after it.
func wrapPost(c *Copy, h header, p Post, footer, b string) (header, error) {
	var keep [][]byte
	fields := h.Fields()
	for fields.Next() {
		switch fields.Key() {
		case "From", "Reply-To", "To", "Cc", "Subject", "Date", "Message-Id", "In-Reply-To", "References":
			raw, err := fields.Raw()
			if err != nil {
				return h, fmt.Errorf("render: %w", err)
			}
			keep = append(keep, raw)
		}
	}
	var outer header
	for i := len(keep) - 1; i >= 0; i-- { // AddRaw puts a field on top
		outer.AddRaw(keep[i])
	}
	setMultipart(&outer, b)
	ends, err := endsInNewline(p)
	if err != nil {
		return h, err
	}
	c.Skip = 0
	c.Lead = []byte("This is a multi-part message in MIME format.\r\n--" + b + "\r\n" +
		"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n")
	if !ends {
		c.Insert = []byte("\r\n")
	}
	c.Insert = append(c.Insert, "\r\n--"+b...)
	if footer != "" {
		c.Insert = append(c.Insert, "\r\n"...)
		c.Insert = append(c.Insert, footerPart(footer)...)
		c.Insert = append(c.Insert, "--"+b...)
	}
	c.Insert = append(c.Insert, "--\r\n"...)
	return outer, nil
}

// footerPart is a MIME part holding the footer, without its opening
// delimiter; the footer's last CRLF is the one before the next.
func footerPart(footer string) []byte {
	cte := "7bit"
	if !isASCII(footer) {
		cte = "8bit"
	}
	return []byte("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: " + cte +
		"\r\nContent-Disposition: inline\r\n\r\n" + footer)
}

// setMultipart makes h the header of a multipart/mixed with boundary b.
func setMultipart(h *header, b string) {
	if !h.Has("Mime-Version") {
		h.AddRaw([]byte("MIME-Version: 1.0\r\n"))
	}
	h.AddRaw([]byte("Content-Type: " + mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": b}) + "\r\n"))
}

// contentType returns the post's media type, lowercase, and its
// parameters; no Content-Type is text/plain (RFC 2045 §5.2).
func contentType(h header) (string, map[string]string, error) {
	v := h.Get("Content-Type")
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{}, nil
	}
	t, params, err := mime.ParseMediaType(v)
	return strings.ToLower(t), params, err
}

// appendable reports whether footer can be appended to a text/plain
// body as it is: the body is not encoded (7bit, 8bit or binary), and the
// footer's characters mean the same in the part's charset (an ASCII
// footer in any charset that extends ASCII; any footer in UTF-8 that is
// not declared 7bit).
func appendable(h header, charset, footer string) bool {
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	if cte != "" && cte != "7bit" && cte != "8bit" && cte != "binary" {
		return false
	}
	cs := strings.ToLower(charset)
	if isASCII(footer) {
		return !strings.HasPrefix(cs, "utf-16") && !strings.HasPrefix(cs, "utf-32") &&
			!strings.HasPrefix(cs, "ucs") && cs != "utf-7"
	}
	return cs == "utf-8" && (cte == "8bit" || cte == "binary")
}

// endsInNewline reports whether the post's body is empty or ends with a
// line end.
func endsInNewline(p Post) (bool, error) {
	if p.Size <= int64(len(p.Header)) {
		return true, nil
	}
	var b [1]byte
	if _, err := p.Body.ReadAt(b[:], p.Size-1); err != nil && err != io.EOF {
		return false, fmt.Errorf("render: read post: %w", err)
	}
	return b[0] == '\n', nil
}

// closingDelimiter returns the offset in the post of the line that
// closes the top-level multipart with boundary b ("--b--"), or -1. The
// body is read once, as a stream; lines too long to be a delimiter are
// passed over.
func closingDelimiter(p Post, b string) (int64, error) {
	want := []byte("--" + b + "--")
	off := int64(len(p.Header))
	r := bufio.NewReaderSize(io.NewSectionReader(p.Body, off, p.Size-off), 64<<10)
	atStart := true // at the start of a line
	for {
		line, err := r.ReadSlice('\n')
		if atStart && bytes.Equal(bytes.TrimRight(line, " \t\r\n"), want) {
			return off, nil
		}
		off += int64(len(line))
		atStart = len(line) > 0 && line[len(line)-1] == '\n'
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			return -1, nil
		case err != nil:
			return -1, fmt.Errorf("render: read post: %w", err)
		}
	}
}

// randomBoundary returns a boundary that cannot occur in quoted-printable
// or base64 text ("=_") and that nothing else will contain by chance.
func randomBoundary() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it aborts the program instead)
	return "=_fanmail_" + hex.EncodeToString(b[:])
}
