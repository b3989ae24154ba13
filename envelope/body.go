package envelope

import (
	"io"
)

// Body is a message's content as the stages hand it on: random access and
// a known size, so that no stage needs the whole message in memory.
// Ingress spools what it receives into one (queuegroups.Body), the
// expander reads only the header from it, and the queue copies it into
// its journal in chunks. *io.SectionReader is one.
type Body interface {
	io.ReaderAt
	Size() int64
}

// Bytes is a Body held in memory, for messages fanmail composes itself
// (DSNs) and for tests.
type Bytes []byte

// ReadAt implements io.ReaderAt.
func (b Bytes) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Size is len(b).
func (b Bytes) Size() int64 { return int64(len(b)) }

// Reader returns a reader over the whole of b.
func Reader(b Body) io.Reader { return io.NewSectionReader(b, 0, b.Size()) }

// WithHeader returns the content of b with its first skip bytes replaced
// by header: a rewritten header in front of a body left where it is.
func WithHeader(header []byte, b Body, skip int64) Body {
	return &joined{head: header, rest: io.NewSectionReader(b, skip, b.Size()-skip)}
}

// joined is a Body made of bytes in memory followed by another Body.
type joined struct {
	head []byte
	rest *io.SectionReader
}

func (j *joined) Size() int64 { return int64(len(j.head)) + j.rest.Size() }

func (j *joined) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := 0
	if off < int64(len(j.head)) {
		n = copy(p, j.head[off:])
		if n == len(p) {
			return n, nil
		}
	}
	m, err := j.rest.ReadAt(p[n:], off+int64(n)-int64(len(j.head)))
	return n + m, err
}
