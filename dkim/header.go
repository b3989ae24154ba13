package dkim

import (
	"bytes"
	"fmt"
	"strings"
)

// field is one header field as it appears in the header block: raw holds
// its name, colon, value and every continuation line, line ends included.
type field struct {
	name string // as written, without the whitespace before the colon
	raw  []byte
}

// parseHeader splits a header block into fields. The block ends at the
// first empty line or at the end of h, so a whole message may be given;
// lines may end in CRLF or in a bare LF. A line that is neither a field
// nor a continuation of one is an error: a signature over a header that
// receivers parse differently is worse than none.
func parseHeader(h []byte) ([]field, error) {
	var fields []field
	for n, rest := 1, h; len(rest) > 0; n++ {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		content := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(content) == 0 {
			break // the blank line that ends the header
		}
		if content[0] == ' ' || content[0] == '\t' {
			if len(fields) == 0 {
				return nil, fmt.Errorf("dkim: header line %d: a continuation line (starting with whitespace) before any field", n)
			}
			f := &fields[len(fields)-1]
			f.raw = f.raw[:len(f.raw)+len(line)] // continuation lines follow their field in h
			continue
		}
		colon := bytes.IndexByte(content, ':')
		if colon < 0 {
			return nil, fmt.Errorf("dkim: header line %d: no colon (a field is NAME: VALUE): %.40q", n, content)
		}
		name := bytes.TrimRight(content[:colon], " \t")
		if len(name) == 0 {
			return nil, fmt.Errorf("dkim: header line %d: empty field name before the colon", n)
		}
		for _, c := range name {
			if c < 33 || c > 126 {
				return nil, fmt.Errorf("dkim: header line %d: field name %.40q has a byte outside printable ASCII (RFC 5322 §2.2)", n, name)
			}
		}
		fields = append(fields, field{name: string(name), raw: line})
	}
	return fields, nil
}

// appendRelaxed appends the relaxed canonical form of a field (RFC 6376
// §3.4.2): the name in lowercase without the whitespace around the colon,
// the value unfolded, every run of SP and HTAB made one SP, no whitespace
// at its start or end, then CRLF. A CR that does not end a line stays, as
// in the RFC and dkimpy.
func appendRelaxed(dst []byte, f field) []byte {
	dst = appendLower(dst, f.name)
	dst = append(dst, ':')
	v := f.raw[bytes.IndexByte(f.raw, ':')+1:]
	wsp, started := false, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\n':
			// a line end: unfolding removes it (the CR before it too)
		case '\r':
			if i+1 == len(v) || v[i+1] == '\n' {
				continue // CRLF, or a CR ending the last line of the block
			}
			fallthrough
		default:
			if c == ' ' || c == '\t' {
				wsp = started
				continue
			}
			if wsp {
				dst = append(dst, ' ')
				wsp = false
			}
			dst = append(dst, c)
			started = true
		}
	}
	return append(dst, '\r', '\n')
}

func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// signedFields are the fields a signature covers, in h= order, when
// present. They are what a reader sees and what a list adds (RFC 2369,
// RFC 2919, RFC 8058); Received and the other trace fields are left out
// because every hop adds its own.
var signedFields = [...]string{
	"from", "to", "cc", "subject", "date", "message-id", "reply-to",
	"list-id", "list-post", "list-help", "list-subscribe", "list-unsubscribe",
	"list-unsubscribe-post", "list-archive", "mime-version", "content-type",
}

// selectFields returns the h= names and the fields they cover, in the
// order a verifier hashes them: for a name listed n times, the n last
// fields of that name, the bottom one first (§5.4.2).
//
// From is listed once more than it occurs (over-signing, §8.15): the
// extra entry covers "no such field", so a From field added anywhere
// after signing makes the verifier hash it in that place and the
// signature fails. Without it a second From added above the signed one
// would leave the signature valid while many mail readers show the
// added one.
func selectFields(fields []field) (names []string, picked []field, err error) {
	names = make([]string, 0, len(fields)+1)
	picked = make([]field, 0, len(fields))
	for _, name := range signedFields {
		n := 0
		for i := len(fields) - 1; i >= 0; i-- {
			if strings.EqualFold(fields[i].name, name) {
				picked = append(picked, fields[i])
				n++
			}
		}
		if name == "from" {
			if n == 0 {
				return nil, nil, fmt.Errorf("dkim: the header has no From field (RFC 5322 requires one, and DKIM must sign it)")
			}
			names = append(names, name) // the over-signed entry: n+1 names pick n fields and then nothing
		}
		for range n {
			names = append(names, name)
		}
	}
	return names, picked, nil
}
