package queuegroups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Reading a message's records back while the server runs: one envelope
// when a runner takes it, and every record of a message for a DSN, a
// listing or a relocation. Records are read as the writer wrote them;
// replay has checked the old ones, and the new ones are this process's.

var errNotOurs = errors.New("record belongs to another message")

// readFrameAt reads the frame at off in seg: its type, its payload (for
// a head record, without the body) and its whole length.
func readFrameAt(r io.ReaderAt, off int64) (typ byte, payload []byte, n int64, err error) {
	var hdr [frameHeader + 1]byte
	if _, err := r.ReadAt(hdr[:], off); err != nil {
		return 0, nil, 0, fmt.Errorf("read record header at %d: %w", off, err)
	}
	length := int64(binary.LittleEndian.Uint32(hdr[4:8]))
	if string(hdr[:4]) != string(frameMagic[:]) || length == 0 || length > maxRecord {
		return 0, nil, 0, fmt.Errorf("no record at %d", off)
	}
	typ = hdr[frameHeader]
	keep := length - 1
	if typ == recMessage {
		var lb [binary.MaxVarintLen64]byte
		k, _ := r.ReadAt(lb[:min(int64(len(lb)), keep)], off+frameHeader+1)
		h, w := binary.Uvarint(lb[:k])
		if w <= 0 || int64(h) > keep-int64(w) {
			return 0, nil, 0, fmt.Errorf("bad head record at %d", off)
		}
		keep = int64(w) + int64(h)
	}
	payload = make([]byte, keep)
	if _, err := r.ReadAt(payload, off+frameHeader+1); err != nil {
		return 0, nil, 0, fmt.Errorf("read record at %d: %w", off, err)
	}
	if typ == recMessage {
		_, w := binary.Uvarint(payload)
		payload = payload[w:]
	}
	return typ, payload, frameHeader + length, nil
}

// readEnvelope reads envelope i's record. Called without the group's
// lock: the slot does not change while a runner holds the envelope.
func (m *msgState) readEnvelope(seg *segment, off int64, i int) (*envRecord, error) {
	return readEnvelopeOf(m.id, seg, off, i)
}

// readEnvelopeOf reads envelope i of message id at off in seg.
func readEnvelopeOf(id string, seg *segment, off int64, i int) (*envRecord, error) {
	typ, payload, _, err := readFrameAt(seg.file, off)
	if err != nil {
		return nil, err
	}
	if typ != recEnvelope {
		return nil, fmt.Errorf("envelope %d of %s: record of type %d", i, id, typ)
	}
	r, err := decodeEnvelope(payload)
	if err != nil {
		return nil, err
	}
	if r.id != id || r.index != i {
		return nil, fmt.Errorf("envelope %d of %s: %w", i, id, errNotOurs)
	}
	return r, nil
}

// segEnd is a segment and how far to read it.
type segEnd struct {
	seg *segment
	end int64
}

// snapshot records how far each segment is written now.
func snapshot(segs []*segment) []segEnd {
	out := make([]segEnd, len(segs))
	for i, s := range segs {
		out[i] = segEnd{s, s.size.Load()}
	}
	return out
}

// scan calls fn with every record of m after its head, in journal
// order: its envelopes, its commit and every status record and mark, in
// segs (from m's head on) up to each one's end.
// Called with the group's mutex held, or on a view.
func (m *msgState) scan(segs []segEnd, fn func(typ byte, payload []byte) error) error {
	return scanRecords(segs, m.bodyOff+m.bodyLen, m.id, fn)
}

// scanRecords calls fn with every record of message id in segs, the
// first from start on.
func scanRecords(segs []segEnd, start int64, id string, fn func(typ byte, payload []byte) error) error {
	for i, s := range segs {
		if i > 0 {
			start = 0
		}
		if err := scanSegment(s.seg, start, s.end, id, fn); err != nil {
			return err
		}
	}
	return nil
}

// scanSegment calls fn with each record of message id in seg between
// from and to. Bodies are skipped unread.
func scanSegment(seg *segment, from, to int64, id string, fn func(typ byte, payload []byte) error) error {
	w := &window{src: seg.file}
	for off := from; off < to; {
		var hdr [frameHeader + 1]byte
		if _, err := w.ReadAt(hdr[:], off); err != nil {
			return fmt.Errorf("scan %s at %d: %w", seg.path, off, err)
		}
		length := int64(binary.LittleEndian.Uint32(hdr[4:8]))
		typ := hdr[frameHeader]
		if string(hdr[:4]) != string(frameMagic[:]) || length == 0 || off+frameHeader+length > to {
			// Bytes replay quarantined: go on at the next record, as it did.
			sc := &frameScanner{r: w, size: to}
			off = sc.resync(off + 1)
			continue
		}
		if typ != recMessage && typ != recHeader {
			payload := make([]byte, length-1)
			if _, err := w.ReadAt(payload, off+frameHeader+1); err != nil {
				return fmt.Errorf("scan %s at %d: %w", seg.path, off, err)
			}
			if recordID(typ, payload) == id {
				if err := fn(typ, payload); err != nil {
					return err
				}
			}
		}
		off += frameHeader + length
	}
	return nil
}

// segmentsFrom returns the journal's segments from seg on.
func (j *journal) segmentsFrom(seg *segment) []*segment {
	segs := j.segments()
	for i, s := range segs {
		if s == seg {
			return segs[i:]
		}
	}
	return nil
}
