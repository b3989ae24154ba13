package queuegroups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"fanmail/envelope"
)

// Record framing: magic(4) length(4, little endian, of type+payload)
// lengthcrc(4, crc32c of the length) crc(4, crc32c of the length and
// type+payload) type(1) payload. A torn or half-written record fails
// the check and replay skips it instead of trusting garbage; the magic
// lets replay find the next record after an unreadable stretch
// (resync), and the length's own checksum lets it reject a false start
// there without reading the length it claims.
const (
	frameHeader = 16
	maxRecord   = 1 << 30
)

// frameMagic starts every frame; it is not valid UTF-8, so message text
// rarely holds it.
var frameMagic = [4]byte{0xF5, 'F', 'M', 'J'}

// journalVersion is the record format, stated by the header record that
// starts every segment.
const journalVersion = 3

const (
	recMessage  byte = 1 // a message's head: its parts, then the body
	recStatus   byte = 2 // one attempt of one envelope: started, its outcome, or a panic
	recDelete   byte = 3 // message removed by the operator, or finished after its DSN
	recWarned   byte = 4 // the delay warning for a message was sent
	recHeader   byte = 5 // first record of a segment: the format version
	recAside    byte = 6 // the message was moved aside after attempts that panicked or crashed
	recEnvelope byte = 7 // one envelope: its part, domain and recipients
	recCommit   byte = 8 // every envelope is written: the message may be delivered
	recPart     byte = 9 // a part declared after the head was written
	// recReported names failed recipients a DSN reported. Older builds
	// skip it as unknown, and at worst report those recipients again.
	recReported byte = 10
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
	putFrameHeader(e.b, int64(len(e.b)-frameHeader), crc32.Update(lengthCRC(int64(len(e.b)-frameHeader)), castagnoli, e.b[frameHeader:]))
	return e.b
}

// lengthCRC starts a frame's checksum: the CRC of its length field.
func lengthCRC(n int64) uint32 {
	var l [4]byte
	binary.LittleEndian.PutUint32(l[:], uint32(n))
	return crc32.Checksum(l[:], castagnoli)
}

// putFrameHeader writes magic, length n (of type and payload), the
// length's checksum and crc.
func putFrameHeader(b []byte, n int64, crc uint32) {
	copy(b[0:4], frameMagic[:])
	binary.LittleEndian.PutUint32(b[4:8], uint32(n))
	binary.LittleEndian.PutUint32(b[8:12], lengthCRC(n))
	binary.LittleEndian.PutUint32(b[12:16], crc)
}

// reply writes a recipient's last reply, every part of it.
func (e *encoder) reply(r envelope.Reply) {
	e.uvarint(uint64(r.Code))
	e.str(r.Enhanced)
	e.str(r.Text)
	e.str(r.Host)
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

func (d *decoder) reply() envelope.Reply {
	code := d.uvarint()
	if code > 999 {
		d.fail()
	}
	return envelope.Reply{Code: int(code), Enhanced: d.str(), Text: d.str(), Host: d.str()}
}

func (d *decoder) time() time.Time {
	v := d.varint()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v)
}
