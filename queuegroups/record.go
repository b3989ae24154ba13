package queuegroups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"fanmail/envelope"
)

// Record framing: length(4, little endian, of type+payload) crc32c(4) type(1) payload.
// The CRC covers type and payload, so a torn or half-written tail fails
// the check and replay stops there instead of trusting garbage.
const (
	frameHeader = 8
	maxRecord   = 1 << 30
)

const (
	recMessage byte = 1 // full message: body, parts, envelopes, recipient states
	recStatus  byte = 2 // outcome of one attempt of one envelope
	recDelete  byte = 3 // message removed by the operator, or finished after its DSN
	recWarned  byte = 4 // the delay warning for a message was sent
	// recMessageLayout is recMessage whose parts carry their copy's
	// layout (Part.Skip, Insert, InsertAt): written only when a part has
	// one, so other messages keep the first format.
	recMessageLayout byte = 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errCorrupt = errors.New("corrupt record")

// rcptStatus is a recipient's durable state.
type rcptStatus byte

const (
	rcptPending   rcptStatus = 0
	rcptDelivered rcptStatus = 1
	rcptFailed    rcptStatus = 2
)

func (s rcptStatus) final() bool { return s == rcptDelivered || s == rcptFailed }

// encoder appends the journal's primitive types to a buffer.
type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) byte1(c byte)     { e.b = append(e.b, c) }
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.varint(0)
		return
	}
	e.varint(t.UnixNano())
}

// record is what the journal writer appends: a complete frame, or, when
// body is set, a frame whose payload ends with body, which the writer
// copies into the segment in chunks and then completes the frame's
// header, so a big message is never held in memory whole.
type record struct {
	frame []byte
	body  envelope.Body
}

// complete is a record built whole in memory.
func complete(frame []byte) record { return record{frame: frame} }

// size is the record's length on disk.
func (r record) size() int64 {
	if r.body == nil {
		return int64(len(r.frame))
	}
	return int64(len(r.frame)) + r.body.Size()
}

// frame fills in the header reserved by newEncoder and returns the record.
func (e *encoder) frame() []byte {
	binary.LittleEndian.PutUint32(e.b[0:4], uint32(len(e.b)-frameHeader))
	binary.LittleEndian.PutUint32(e.b[4:8], crc32.Checksum(e.b[frameHeader:], castagnoli))
	return e.b
}

// newEncoder starts a record of the given type, reserving its header.
func newEncoder(typ byte, sizeHint int) *encoder {
	e := &encoder{b: make([]byte, frameHeader, frameHeader+1+sizeHint)}
	e.byte1(typ)
	return e
}

// decoder reads what encoder wrote; the first error sticks.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w at payload offset %d", errCorrupt, d.off)
	}
}

func (d *decoder) uvarint() uint64 { return readVarint(d, binary.Uvarint) }
func (d *decoder) varint() int64   { return readVarint(d, binary.Varint) }

// readVarint reads one varint with read (binary.Uvarint or Varint).
func readVarint[T uint64 | int64](d *decoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b[d.off:])
	if n <= 0 {
		d.fail()
		return 0
	}
	d.off += n
	return v
}

// count reads a length and checks it against what remains, so a corrupt
// length can never make replay allocate gigabytes.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)-d.off) {
		d.fail()
		return 0
	}
	return int(n)
}

// bytesRef returns a slice aliasing the payload and its offset within it.
func (d *decoder) bytesRef() ([]byte, int) {
	n := d.count()
	if d.err != nil {
		return nil, 0
	}
	start := d.off
	d.off += n
	return d.b[start:d.off], start
}

func (d *decoder) str() string {
	p, _ := d.bytesRef()
	return string(p)
}

func (d *decoder) byte1() byte {
	if d.err != nil || d.off >= len(d.b) {
		d.fail()
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) time() time.Time {
	v := d.varint()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v)
}
