package queuegroups

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// replayer is what a journal's records are replayed into: a queue
// directory's state.
type replayer interface {
	// record is one valid record at off in seg. For a message record,
	// payload is the record without its body, which lies at bodyOff
	// (absolute, in seg's file) for bodyLen bytes.
	record(seg *segment, off int64, typ byte, payload []byte, bodyOff, bodyLen int64) error
	// damaged reports an unreadable stretch of seg, already copied to
	// the quarantine file, and the message IDs found in it.
	damaged(seg *segment, off, n int64, ids []string)
}

// errJournalVersion means a segment was written in another format.
var errJournalVersion = errors.New("journal segment written by another fanmail version")

// replaySegment reads segment seq's frames in order into r. A stretch of
// bytes that holds no valid frame (a torn tail after a crash, a flipped
// bit on disk, a segment of an unknown format) is copied to a quarantine
// file beside the segment and logged with the message IDs that can be
// read from it; replay resumes at the next valid frame, so one bad
// record never hides the records after it.
func (j *journal) replaySegment(seq uint64, r replayer) (*segment, error) {
	path := segmentPath(j.dir, seq)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open journal segment: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat journal segment: %w", err)
	}
	seg := &segment{seq: seq, path: path, file: f}
	end, err := j.replayFrom(seg, f, st.Size(), r)
	if err != nil {
		f.Close()
		return nil, err
	}
	seg.size.Store(end)
	return seg, nil
}

// replayFrom replays size bytes of src, seg's content, and returns how
// far it read.
func (j *journal) replayFrom(seg *segment, src io.ReaderAt, size int64, r replayer) (int64, error) {
	sc := &frameScanner{r: &window{src: src}, size: size}
	off := int64(0)
	for off < sc.size {
		fr, ok := sc.frameAt(off)
		if !ok {
			next := sc.resync(off + 1)
			j.quarantine(seg, sc, off, next-off, r)
			off = next
			continue
		}
		if off == 0 && fr.typ == recHeader {
			if v, err := decodeHeader(fr.payload); err == nil && v != journalVersion {
				return 0, fmt.Errorf("%s: format %d, this build reads %d: %w; drain the queue with the build that wrote it",
					seg.path, v, journalVersion, errJournalVersion)
			}
		}
		if err := r.record(seg, off, fr.typ, fr.payload, fr.bodyOff, fr.bodyLen); err != nil {
			j.log.Warn("journal: skipping unreadable record", "segment", seg.path, "offset", off, "err", err)
		}
		off += fr.n
	}
	if sc.err != nil {
		return 0, fmt.Errorf("read journal segment %s: %w", seg.path, sc.err)
	}
	return off, nil
}

// quarantine copies n unreadable bytes at off out of seg into
// SEGMENT.OFFSET.quarantine and reports them. A torn tail (the last
// write before a crash, never acknowledged) gets a warning; a stretch
// with valid records after it is damage, an error.
func (j *journal) quarantine(seg *segment, sc *frameScanner, off, n int64, r replayer) {
	name := fmt.Sprintf("%s.%d.quarantine", seg.path, off)
	ids := sc.idsIn(off, n)
	var err error
	if !j.readOnly {
		err = copyOut(sc.r.src, off, n, name) // a read-only replay writes nothing
	}
	level, msg := "error", "journal: unreadable bytes skipped and copied to a quarantine file"
	if off+n == sc.size {
		level, msg = "warn", "journal: torn or unreadable tail skipped and copied to a quarantine file"
	}
	args := []any{"segment", seg.path, "offset", off, "bytes", n, "file", name, "qids", strings.Join(ids, ",")}
	if err != nil {
		args = append(args, "copy_err", err)
	}
	if level == "warn" {
		j.log.Warn(msg, args...)
	} else {
		j.log.Error(msg, args...)
	}
	r.damaged(seg, off, n, ids)
}

// copyOut writes n bytes of f at off to a new file name, durably; an
// existing file of that name (from an earlier start) is kept.
func copyOut(f io.ReaderAt, off, n int64, name string) error {
	out, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, io.NewSectionReader(f, off, n)); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(name))
}

// frame is one valid record as the scanner found it.
type frame struct {
	typ     byte
	payload []byte // without the body of a message record
	bodyOff int64  // absolute offset of a message record's body
	bodyLen int64
	n       int64 // whole frame length
}

// frameScanner reads frames from a segment at given offsets.
type frameScanner struct {
	r    *window
	size int64
	err  error // a read error other than running off the end
	buf  []byte
}

// frameAt returns the frame at off if one is there, complete and with a
// matching checksum. A message record's body is checked in chunks and
// not kept.
func (sc *frameScanner) frameAt(off int64) (frame, bool) {
	var hdr [frameHeader + 1]byte
	if off+int64(len(hdr)) > sc.size || !sc.read(hdr[:], off) || !bytes.Equal(hdr[:4], frameMagic[:]) {
		return frame{}, false
	}
	length := int64(binary.LittleEndian.Uint32(hdr[4:8]))
	if lengthCRC(length) != binary.LittleEndian.Uint32(hdr[8:12]) ||
		length == 0 || length > maxRecord || off+frameHeader+length > sc.size {
		return frame{}, false
	}
	fr := frame{typ: hdr[frameHeader], n: frameHeader + length}
	crc := crc32.Update(lengthCRC(length), castagnoli, hdr[frameHeader:])
	payloadOff, payloadLen := off+frameHeader+1, length-1
	keep := payloadLen
	if fr.typ == recMessage {
		// uvarint(head length), head, body: keep the head only.
		var lb [binary.MaxVarintLen64]byte
		lb2 := lb[:min(int64(len(lb)), payloadLen)]
		if !sc.read(lb2, payloadOff) {
			return frame{}, false
		}
		h, k := binary.Uvarint(lb2)
		if k <= 0 || h > uint64(payloadLen-int64(k)) {
			return frame{}, false
		}
		keep = int64(k) + int64(h)
		fr.bodyOff, fr.bodyLen = payloadOff+keep, payloadLen-keep
	}
	payload := make([]byte, keep)
	if !sc.read(payload, payloadOff) {
		return frame{}, false
	}
	crc = crc32.Update(crc, castagnoli, payload)
	for at, end := payloadOff+keep, payloadOff+payloadLen; at < end; {
		if sc.buf == nil {
			sc.buf = make([]byte, streamChunk)
		}
		c := sc.buf[:min(int64(len(sc.buf)), end-at)]
		if !sc.read(c, at) {
			return frame{}, false
		}
		crc = crc32.Update(crc, castagnoli, c)
		at += int64(len(c))
	}
	if crc != binary.LittleEndian.Uint32(hdr[12:16]) {
		return frame{}, false
	}
	if fr.typ == recMessage {
		_, k := binary.Uvarint(payload)
		payload = payload[k:]
	}
	fr.payload = payload
	return fr, true
}

func (sc *frameScanner) read(p []byte, off int64) bool {
	n, err := sc.r.ReadAt(p, off)
	if n == len(p) {
		return true
	}
	if err != nil && err != io.EOF && sc.err == nil {
		sc.err = err
	}
	return false
}

// resync returns the offset of the next valid frame at or after from, or
// the end of the segment.
func (sc *frameScanner) resync(from int64) int64 {
	found := from
	ok := sc.eachMagic(from, sc.size-from, func(pos int64) bool {
		if _, valid := sc.frameAt(pos); valid {
			found = pos
			return true
		}
		return false
	})
	if ok {
		return found
	}
	return sc.size
}

// eachMagic calls fn with the offset of every frame magic in n bytes at
// off, in order, until fn returns true; it reports whether one did.
func (sc *frameScanner) eachMagic(off, n int64, fn func(pos int64) bool) bool {
	buf := make([]byte, 64<<10)
	end := off + n
	for at := off; at < end; {
		c := buf[:min(int64(len(buf)), end-at)]
		got, err := sc.r.ReadAt(c, at)
		if got == 0 {
			if err != nil && err != io.EOF && sc.err == nil {
				sc.err = err
			}
			return false
		}
		c = c[:got]
		for i := 0; ; {
			k := bytes.Index(c[i:], frameMagic[:])
			if k < 0 {
				break
			}
			if fn(at + int64(i+k)) {
				return true
			}
			i += k + 1
		}
		if at+int64(got) >= end {
			break
		}
		// Overlap the next read so a magic across the boundary is seen.
		at += int64(max(got-len(frameMagic)+1, 1))
	}
	return false
}

// idsIn returns the queue IDs that can be read from an unreadable
// stretch: the message ID each frame header in it would carry.
func (sc *frameScanner) idsIn(off, n int64) []string {
	var ids []string
	seen := map[string]bool{}
	buf := make([]byte, 64)
	sc.eachMagic(off, n, func(pos int64) bool {
		m, _ := sc.r.ReadAt(buf, pos)
		if id := idOfFrame(buf[:m]); id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
		return false
	})
	return ids
}

// idOfFrame reads the message ID from the start of a frame whose
// checksum failed: every record but the segment header begins with it.
func idOfFrame(b []byte) string {
	if len(b) < frameHeader+1 {
		return ""
	}
	typ, p := b[frameHeader], b[frameHeader+1:]
	if typ == recMessage {
		if _, k := binary.Uvarint(p); k > 0 {
			p = p[k:]
		} else {
			return ""
		}
	}
	d := &decoder{b: p}
	id := d.str()
	if d.err != nil || !validID(id) {
		return ""
	}
	return id
}

// maxNode bounds the node name in a queue ID, as config does.
const maxNode = 63

// validID reports whether s looks like a queue ID from an IDSource.
func validID(s string) bool {
	if len(s) > idLen+1 && s[idLen] == '.' && len(s) <= idLen+1+maxNode {
		for i := idLen + 1; i < len(s); i++ {
			if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
				return false
			}
		}
		s = s[:idLen]
	}
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(idAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// window is a read-ahead io.ReaderAt over a segment, so replay reads it
// in large sequential reads rather than one per record.
type window struct {
	src   io.ReaderAt
	start int64
	buf   []byte
}

const windowSize = 1 << 20

func (w *window) ReadAt(p []byte, off int64) (int, error) {
	if off >= w.start && off+int64(len(p)) <= w.start+int64(len(w.buf)) {
		return copy(p, w.buf[off-w.start:]), nil
	}
	if len(p) > windowSize/2 {
		return w.src.ReadAt(p, off)
	}
	if cap(w.buf) < windowSize {
		w.buf = make([]byte, windowSize)
	}
	n, err := w.src.ReadAt(w.buf[:windowSize], off)
	w.start, w.buf = off, w.buf[:n]
	m := copy(p, w.buf)
	if m < len(p) {
		if err == nil {
			err = io.EOF
		}
		return m, err
	}
	return m, nil
}

// encodeHeader is the record that starts every segment.
func encodeHeader() []byte {
	enc := newEncoder(recHeader, 4)
	enc.uvarint(journalVersion)
	return enc.frame()
}

func decodeHeader(payload []byte) (uint64, error) {
	d := &decoder{b: payload}
	v := d.uvarint()
	if d.err != nil {
		return 0, fmt.Errorf("segment header: %w", d.err)
	}
	return v, nil
}
