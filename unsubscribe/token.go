package unsubscribe

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The token format; doc.go draws it.
const (
	format     = 1
	macLen     = 16 // 128 bits of HMAC-SHA256
	macContext = "fanmail unsubscribe\x00"

	// MaxAddrLen is the longest list or member address a token carries:
	// RFC 5321's 254-octet mailbox, as package address enforces.
	MaxAddrLen = 254

	maxIDLen = 3 // uvarint of MaxKeyID
	minRaw   = 1 + 1 + 1 + 1 + 1 + macLen
	maxRaw   = 1 + maxIDLen + 1 + 2*MaxAddrLen + macLen

	// MaxTokenLen is the longest token Mint makes: two 254-octet
	// addresses under a key id above 16383.
	MaxTokenLen = (maxRaw*8 + 5) / 6
)

// ErrInvalid is wrapped by every error of Verify: the token is damaged,
// forged, or signed by a key that is no longer kept.
var ErrInvalid = errors.New("invalid unsubscribe token")

var enc = base64.RawURLEncoding.Strict()

// Mint returns the token that unsubscribes member from list, signed with
// the newest key. Give both addresses in the list store's normal form:
// the token carries them as given, and the store compares members
// exactly. Mint is safe for concurrent use and costs one HMAC-SHA256 of
// under 600 octets and one allocation, the returned string.
func (kr *Keyring) Mint(list, member string) (string, error) {
	if err := checkAddr(list); err != nil {
		return "", fmt.Errorf("unsubscribe token: list address %q: %w", list, err)
	}
	if err := checkAddr(member); err != nil {
		return "", fmt.Errorf("unsubscribe token: member address %q: %w", member, err)
	}
	st := kr.mint.get()
	b := append(st.payload(), format)
	b = binary.AppendUvarint(b, kr.mint.id)
	b = append(b, byte(len(list)))
	b = append(b, list...)
	b = append(b, member...)
	b = st.seal(b)
	var out [MaxTokenLen]byte
	n := enc.EncodedLen(len(b))
	enc.Encode(out[:n], b)
	kr.mint.put(st)
	return string(out[:n]), nil
}

// Verify checks token and returns the list and member it names. Its
// errors wrap ErrInvalid and say why, for the log; they never hold
// anything secret.
func (kr *Keyring) Verify(token string) (list, member string, err error) {
	if len(token) > MaxTokenLen {
		return "", "", fmt.Errorf("%w: %d characters, longer than any token (%d)", ErrInvalid, len(token), MaxTokenLen)
	}
	var raw [maxRaw]byte
	n, err := enc.Decode(raw[:], []byte(token))
	if err != nil {
		return "", "", fmt.Errorf("%w: not base64url: %v", ErrInvalid, err)
	}
	// Even a strict decoder skips CR and LF; a token is one spelling only.
	if enc.EncodedLen(n) != len(token) {
		return "", "", fmt.Errorf("%w: line breaks inside", ErrInvalid)
	}
	id, l, m, err := parse(raw[:n])
	if err != nil {
		return "", "", err
	}
	k := kr.keys[id]
	if k == nil {
		return "", "", fmt.Errorf("%w: signed by key %d, which is not kept", ErrInvalid, id)
	}
	st := k.get()
	sealed := st.seal(append(st.payload(), raw[:n-macLen]...))
	ok := hmac.Equal(sealed[n-macLen:], raw[n-macLen:n])
	k.put(st)
	if !ok {
		return "", "", fmt.Errorf("%w: signature does not match", ErrInvalid)
	}
	return string(l), string(m), nil
}

// parse splits a decoded token into its key id and addresses, checking
// its structure only; the MAC is Verify's.
func parse(raw []byte) (id uint64, list, member []byte, err error) {
	if len(raw) < minRaw {
		return 0, nil, nil, fmt.Errorf("%w: %d octets, too short", ErrInvalid, len(raw))
	}
	p := raw[:len(raw)-macLen]
	if p[0] != format {
		return 0, nil, nil, fmt.Errorf("%w: unknown format %d", ErrInvalid, p[0])
	}
	p = p[1:]
	id, w := binary.Uvarint(p)
	// One encoding per id: the shortest, as AppendUvarint writes it.
	if w <= 0 || id == 0 || id > MaxKeyID || w != len(binary.AppendUvarint(nil, id)) {
		return 0, nil, nil, fmt.Errorf("%w: bad key id", ErrInvalid)
	}
	p = p[w:]
	if len(p) < 1 {
		return 0, nil, nil, fmt.Errorf("%w: truncated", ErrInvalid)
	}
	ll := int(p[0])
	p = p[1:]
	if ll == 0 || ll >= len(p) {
		return 0, nil, nil, fmt.Errorf("%w: bad address lengths", ErrInvalid)
	}
	list, member = p[:ll], p[ll:]
	if checkAddr(string(list)) != nil || checkAddr(string(member)) != nil {
		return 0, nil, nil, fmt.Errorf("%w: bad address", ErrInvalid)
	}
	return id, list, member, nil
}

// checkAddr is the least an address in a token must be: 1 to MaxAddrLen
// octets of UTF-8. Whether it parses is the list store's concern.
func checkAddr(a string) error {
	switch {
	case a == "":
		return errors.New("empty")
	case len(a) > MaxAddrLen:
		return fmt.Errorf("longer than %d octets", MaxAddrLen)
	case !utf8.ValidString(a):
		return errors.New("not UTF-8")
	}
	return nil
}
