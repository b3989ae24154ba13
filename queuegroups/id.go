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
// in milliseconds, then a counter. An ID made in a later millisecond
// sorts after one made earlier (as long as the clock does not step
// back); within one millisecond the counter decides, and it starts at a
// random value, so there IDs are unique but not in creation order.
type IDSource struct {
	counter atomic.Uint64
}

// NewIDSource seeds the counter randomly so two runs in the same
// millisecond do not collide.
func NewIDSource() *IDSource {
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	s := &IDSource{}
	s.counter.Store(binary.BigEndian.Uint64(seed[:]))
	return s
}

// Next returns a fresh queue ID.
func (s *IDSource) Next() string {
	var out [16]byte
	// 9 characters of milliseconds (45 bits, good until the year 3084),
	// then 7 of the counter's low 35 bits.
	putBase32(out[:9], uint64(time.Now().UnixMilli()))
	putBase32(out[9:], s.counter.Add(1))
	return string(out[:])
}

// putBase32 writes the low 5·len(dst) bits of v into dst, most
// significant first.
func putBase32(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = idAlphabet[v&31]
		v >>= 5
	}
}
