package expander

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"fanmail/envelope"
)

// MaxHeaderSize bounds the header of a post: the expander reads the
// header into memory (to count Received fields and take out List-Id)
// and passes the body through unread, so this, not the message size,
// is what a post costs it in memory.
const MaxHeaderSize = 256 << 10

// ErrHeaderTooLarge means a post's header alone is over MaxHeaderSize.
var ErrHeaderTooLarge = errors.New("message header too large")

// readHeader returns the header of b, up to and including the empty line
// that ends it (or all of b, if it has no body), reading no more than
// limit bytes.
func readHeader(b envelope.Body, limit int) ([]byte, error) {
	var hdr []byte
	buf := make([]byte, min(b.Size(), 4<<10, int64(limit)+1))
	scanned := 0 // hdr[:scanned] holds no end of header
	for off := int64(0); off < b.Size(); {
		n, err := b.ReadAt(buf, off)
		if n == 0 && err != nil {
			return nil, fmt.Errorf("read header: %w", err)
		}
		hdr = append(hdr, buf[:n]...)
		off += int64(n)
		if end := headerEnd(hdr, scanned); end >= 0 {
			if end > limit {
				break
			}
			return hdr[:end], nil
		}
		if len(hdr) > limit {
			break
		}
		scanned = max(len(hdr)-2, 0) // a "\n\r" at the end may start the empty line
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read header: %w", err)
		}
	}
	if len(hdr) > limit {
		return nil, fmt.Errorf("over %d bytes: %w", limit, ErrHeaderTooLarge)
	}
	return hdr, nil
}

// headerEnd returns the offset just past the line that ends the header
// in b, looking for it from line starts at or after from, or -1. The
// header ends at the first empty line ("\r\n" or "\n"), or at the start
// if the message begins with one.
func headerEnd(b []byte, from int) int {
	if from == 0 {
		if bytes.HasPrefix(b, []byte("\r\n")) {
			return 2
		}
		if bytes.HasPrefix(b, []byte("\n")) {
			return 1
		}
	}
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1 // start of the next line
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
	return -1
}
