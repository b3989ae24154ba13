package dkim

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
)

// BodyHash is the SHA-256 of a body in relaxed canonical form: the bh= of
// a signature. The zero value is no hash; Sign refuses it.
type BodyHash [sha256.Size]byte

// String returns the hash in base64, as it appears in bh=.
func (b BodyHash) String() string { return base64.StdEncoding.EncodeToString(b[:]) }

// IsZero reports whether b is the zero value (no body was hashed).
func (b BodyHash) IsZero() bool { return b == BodyHash{} }

// ParseBodyHash reads a hash written by String, for a body hash stored
// with an envelope.
func ParseBodyHash(s string) (BodyHash, error) {
	var b BodyHash
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return b, fmt.Errorf("dkim: body hash %q: %w", s, err)
	}
	if len(raw) != len(b) {
		return b, fmt.Errorf("dkim: body hash %q: %d bytes, want %d", s, len(raw), len(b))
	}
	copy(b[:], raw)
	return b, nil
}

// HashBody reads a message body (what follows the blank line after the
// header) to its end and returns its relaxed body hash. It streams: memory
// use does not grow with the body.
func HashBody(r io.Reader) (BodyHash, error) {
	h := NewBodyHasher()
	if _, err := io.Copy(h, r); err != nil {
		return BodyHash{}, fmt.Errorf("dkim: read body: %w", err)
	}
	return h.Sum(), nil
}

// ErrHasherDone is returned by a write after Sum.
var ErrHasherDone = errors.New("dkim: write to a BodyHasher after Sum")

// A BodyHasher is an io.Writer that computes a body hash: write the body
// to it (or tee the body through it while spooling), then call Sum once.
//
// Relaxed body canonicalization (RFC 6376 §3.4.4): runs of SP and HTAB
// become one SP, whitespace at the end of a line is dropped, empty lines
// at the end of the body are dropped, a body that does not end in CRLF
// gets one, and an empty body hashes as nothing at all. A bare LF ends a
// line as CRLF does (as in go-msgauth, dkimpy and OpenDKIM); a CR that is
// not followed by LF is an ordinary character.
type BodyHasher struct {
	h     hash.Hash
	out   []byte // canonical bytes not yet given to h
	lines int    // line ends seen and not yet written: written only if text follows
	wsp   bool   // whitespace seen and not yet written: written only if text follows on the line
	cr    bool   // the last byte was a CR whose LF may come in the next write
	text  bool   // something other than line ends was written
	done  bool
}

const hasherBuf = 8 << 10 // large enough that SHA-256 runs in long blocks

// NewBodyHasher returns a BodyHasher for one body.
func NewBodyHasher() *BodyHasher {
	return &BodyHasher{h: sha256.New(), out: make([]byte, 0, hasherBuf+64)}
}

// special marks the bytes that relaxed canonicalization treats apart.
var special = [256]bool{' ': true, '\t': true, '\r': true, '\n': true}

// Write canonicalizes p into the hash. It never fails before Sum.
func (b *BodyHasher) Write(p []byte) (int, error) {
	if b.done {
		return 0, ErrHasherDone
	}
	for i := 0; i < len(p); {
		c := p[i]
		if b.cr {
			b.cr = false
			if c == '\n' {
				b.lines++
				b.wsp = false
				i++
				continue
			}
			b.text1('\r') // a lone CR is text
		}
		switch c {
		case '\r':
			b.cr = true
			i++
		case '\n':
			b.lines++
			b.wsp = false
			i++
		case ' ', '\t':
			b.wsp = true
			i++
		default:
			// The run of text to copy as it is: up to the next special
			// byte, but across a single SP between two words, which
			// canonicalization keeps (most of the spaces of a text).
			j := i + 1
			for j < len(p) {
				if !special[p[j]] {
					j++
				} else if p[j] == ' ' && j+1 < len(p) && !special[p[j+1]] {
					j += 2
				} else {
					break
				}
			}
			b.pending()
			b.out = append(b.out, p[i:j]...)
			b.text = true
			i = j
			if len(b.out) >= hasherBuf {
				b.h.Write(b.out) // a hash.Hash never returns an error
				b.out = b.out[:0]
			}
		}
	}
	return len(p), nil
}

// pending writes the line ends and whitespace that text now follows.
func (b *BodyHasher) pending() {
	for ; b.lines > 0; b.lines-- {
		b.out = append(b.out, '\r', '\n')
		if len(b.out) >= hasherBuf {
			b.h.Write(b.out)
			b.out = b.out[:0]
		}
	}
	if b.wsp {
		b.out = append(b.out, ' ')
		b.wsp = false
	}
}

func (b *BodyHasher) text1(c byte) {
	b.pending()
	b.out = append(b.out, c)
	b.text = true
}

// Sum ends the body and returns its hash. The trailing empty lines and
// whitespace held back are dropped; a non-empty body ends in one CRLF.
func (b *BodyHasher) Sum() BodyHash {
	if !b.done {
		if b.cr {
			b.cr = false
			b.text1('\r')
		}
		if b.text {
			b.out = append(b.out, '\r', '\n')
		}
		b.h.Write(b.out)
		b.out = nil
		b.done = true
	}
	var s BodyHash
	b.h.Sum(s[:0])
	return s
}
