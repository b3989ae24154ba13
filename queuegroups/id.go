package queuegroups

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// crockford base32: no I, L, O or U, so IDs read aloud over the phone.
const idAlphabet = "0123456789BCDFGHJKMNPQRSTVWXYZAE"

// IDSource hands out queue IDs: 16 characters, sortable by creation time
// to the millisecond, unique across restarts thanks to a random start.
type IDSource struct {
	counter atomic.Uint32
}

// NewIDSource seeds the counter randomly so two runs in the same
// millisecond do not collide.
func NewIDSource() *IDSource {
	var seed [4]byte
	_, _ = rand.Read(seed[:])
	s := &IDSource{}
	s.counter.Store(binary.BigEndian.Uint32(seed[:]))
	return s
}

// Next returns a fresh queue ID.
func (s *IDSource) Next() string {
	ms := uint64(time.Now().UnixMilli())
	n := uint64(s.counter.Add(1))
	// 45 bits of milliseconds (good until the year 3084) then 35 bits of counter.
	v := ms<<35 | n&(1<<35-1)
	var out [16]byte
	for i := 15; i >= 0; i-- {
		out[i] = idAlphabet[v&31]
		v >>= 5
	}
	return string(out[:])
}
