package dkim

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/emersion/go-message/textproto"
)

// A Signer signs messages for one domain with that domain's signing keys
// (one per algorithm). It is safe for concurrent use. A nil *Signer has
// no keys and signs nothing.
type Signer struct {
	domain string
	keys   []*Key
	now    func() time.Time
}

// Domain returns the signing domain (d=).
func (s *Signer) Domain() string {
	if s == nil {
		return ""
	}
	return s.domain
}

// Keys returns the keys Sign uses, RSA first.
func (s *Signer) Keys() []*Key {
	if s == nil {
		return nil
	}
	return s.keys
}

// Sign returns the DKIM-Signature fields for a message with the given
// header block and body hash: one field per key, each ending in CRLF,
// to be prepended to the header unchanged. header runs up to the blank
// line that ends it (a whole message may be given; the body is not read)
// and must be byte for byte what is sent, give or take the whitespace
// that relaxed canonicalization ignores.
func (s *Signer) Sign(header []byte, bh BodyHash) (string, error) {
	if s == nil {
		return "", nil
	}
	if bh.IsZero() {
		return "", fmt.Errorf("dkim: no body hash (compute it with HashBody)")
	}
	fields, err := parseHeader(header)
	if err != nil {
		return "", err
	}
	names, picked, err := selectFields(fields)
	if err != nil {
		return "", err
	}
	var canon []byte
	for _, f := range picked {
		canon = appendRelaxed(canon, f)
	}
	t := s.now().Unix()
	var out []byte
	for _, k := range s.keys {
		if out, err = k.appendSignature(out, canon, names, bh, t); err != nil {
			return "", err
		}
	}
	return string(out), nil
}

// SignMessage returns msg, a whole message of header, blank line and
// body, with its DKIM-Signature fields prepended: the body hashed and
// the header signed in one call, for mail fanmail writes itself (notices,
// answers). A nil Signer returns msg as it is.
func (s *Signer) SignMessage(msg []byte) ([]byte, error) {
	if s == nil {
		return msg, nil
	}
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		return nil, fmt.Errorf("dkim: no end of header")
	}
	bh, err := HashBody(bytes.NewReader(msg[i+4:]))
	if err != nil {
		return nil, err
	}
	sig, err := s.Sign(msg[:i+4], bh)
	if err != nil {
		return nil, err
	}
	return append([]byte(sig), msg...), nil
}

// SignHeader is Sign for a header held as a go-message textproto.Header,
// as textproto.WriteHeader writes it.
func (s *Signer) SignHeader(h textproto.Header, bh BodyHash) (string, error) {
	if s == nil {
		return "", nil
	}
	var buf bytes.Buffer
	if err := textproto.WriteHeader(&buf, h); err != nil {
		return "", fmt.Errorf("dkim: %w", err)
	}
	return s.Sign(buf.Bytes(), bh)
}

// appendSignature appends one DKIM-Signature field made with k. The
// signed data (§3.7) is the canonical selected fields followed by this
// field in canonical form with an empty b= and no final CRLF; b= comes
// last, so the field up to "b=" is exactly what is hashed.
func (k *Key) appendSignature(dst, canon []byte, names []string, bh BodyHash, t int64) ([]byte, error) {
	start := len(dst)
	f := folder{b: dst, col: len("DKIM-Signature:")}
	f.b = append(f.b, "DKIM-Signature:"...)
	f.tag("v=1;")
	f.tag("a=" + string(k.Algorithm) + "-sha256;")
	f.tag("c=relaxed/relaxed;")
	f.tag("d=" + k.Domain + ";")
	f.tag("s=" + k.Selector + ";")
	f.tag("t=" + strconv.FormatInt(t, 10) + ";")
	for i, n := range names {
		if i == 0 {
			f.tag("h=" + n)
			continue
		}
		f.b = append(f.b, ':')
		f.col++
		f.piece(n)
	}
	f.b = append(f.b, ';')
	f.col++
	f.tag("bh=" + bh.String() + ";")
	f.tag("b=")

	h := sha256.New()
	h.Write(canon)
	sigField := appendRelaxed(nil, field{name: "DKIM-Signature", raw: f.b[start:]})
	h.Write(sigField[:len(sigField)-2])
	sum := h.Sum(nil)

	opts := crypto.Hash(0) // Ed25519 signs the hash itself (RFC 8463 §3)
	if k.Algorithm == RSA {
		opts = crypto.SHA256 // RSASSA-PKCS1-v1_5 over the SHA-256 (RFC 6376 §3.3.1)
	}
	sig, err := k.signer.Sign(rand.Reader, sum, opts)
	if err != nil {
		return nil, fmt.Errorf("dkim: sign with %s: %w", k.File, err)
	}
	f.base64(base64.StdEncoding.EncodeToString(sig))
	return append(f.b, '\r', '\n'), nil
}

// lineMax is the line length RFC 5322 §2.1.1 asks for.
const lineMax = 78

// folder writes a header field, folding its lines before lineMax.
type folder struct {
	b   []byte
	col int
}

func (f *folder) fold() {
	f.b = append(f.b, "\r\n\t"...)
	f.col = 1
}

// tag writes a tag after a space, or on a new line if it does not fit.
func (f *folder) tag(s string) {
	if f.col+1+len(s) > lineMax {
		f.fold()
	} else {
		f.b = append(f.b, ' ')
		f.col++
	}
	f.b = append(f.b, s...)
	f.col += len(s)
}

// piece writes s directly after what precedes it, folding first if it
// does not fit (h= allows FWS after its colons, §3.5).
func (f *folder) piece(s string) {
	if f.col+len(s) > lineMax-1 { // -1: room for the ';' that ends h=
		f.fold()
	}
	f.b = append(f.b, s...)
	f.col += len(s)
}

// base64 writes a base64 value, filling lines (base64string allows FWS
// between any two characters, §2.4).
func (f *folder) base64(s string) {
	for s != "" {
		room := lineMax - f.col
		if room <= 0 {
			f.fold()
			continue
		}
		n := min(room, len(s))
		f.b = append(f.b, s[:n]...)
		f.col += n
		s = s[n:]
	}
}
