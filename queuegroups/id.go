package queuegroups

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// Crockford's base32 alphabet (no I, L, O or U, so IDs read aloud over
// the phone), in ascending byte order, so that IDs compare as their
// numbers do.
const idAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// IDSource hands out queue IDs: 16 characters holding the creation time
// in milliseconds, then a counter, then, from a NodeIDSource, a dot and
// the node's name ("0KXJ5V3F8A1B2C3D.mx1"). An ID made in a later
// millisecond sorts after one made earlier (as long as the clock does
// not step back); within one millisecond the counter decides, and it
// starts at a random value, so there IDs are unique but not in creation
// order. The node name keeps the IDs of several nodes that share one
// list store (and whose logs are read together) apart, and tells a node
// which claims on held posts are its own.
type IDSource struct {
	counter atomic.Uint64
	suffix  string // "." and the node name, or ""
}

// NewIDSource returns a source of IDs without a node name, seeding the
// counter randomly so two runs in the same millisecond do not collide.
func NewIDSource() *IDSource {
	return NewNodeIDSource("")
}

// NewNodeIDSource returns a source of IDs that end in "." and node; an
// empty node makes IDs without one.
func NewNodeIDSource(node string) *IDSource {
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	s := &IDSource{}
	if node != "" {
		s.suffix = "." + node
	}
	s.counter.Store(binary.BigEndian.Uint64(seed[:]))
	return s
}

// Next returns a fresh queue ID.
func (s *IDSource) Next() string {
	out := make([]byte, idLen, idLen+len(s.suffix))
	// 9 characters of milliseconds (45 bits, good until the year 3084),
	// then 7 of the counter's low 35 bits.
	putBase32(out[:9], uint64(time.Now().UnixMilli()))
	putBase32(out[9:], s.counter.Add(1))
	return string(append(out, s.suffix...))
}

// Node returns the node name the source's IDs carry, "" for none.
func (s *IDSource) Node() string {
	if s.suffix == "" {
		return ""
	}
	return s.suffix[1:]
}

// idLen is the length of an ID without its node name.
const idLen = 16

// Node returns the node name in id, "" if it has none.
func Node(id string) string {
	if len(id) > idLen+1 && id[idLen] == '.' {
		return id[idLen+1:]
	}
	return ""
}

// putBase32 writes the low 5·len(dst) bits of v into dst, most
// significant first.
func putBase32(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = idAlphabet[v&31]
		v >>= 5
	}
}
