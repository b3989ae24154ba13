package expander

import (
	"errors"
	"strings"
	"testing"

	"fanmail/envelope"
)

func TestReadHeader(t *testing.T) {
	t.Parallel()
	long := "X-Long: " + strings.Repeat("a", 5000) + "\r\n"
	for _, tt := range []struct {
		name, in, want string
		limit          int
		tooLarge       bool
	}{
		{name: "crlf", in: "A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore\r\n", want: "A: 1\r\nB: 2\r\n\r\n"},
		{name: "lf", in: "A: 1\n\nbody\n", want: "A: 1\n\n"},
		{name: "no body", in: "A: 1\r\nB: 2\r\n", want: "A: 1\r\nB: 2\r\n"},
		{name: "empty header", in: "\r\nbody\r\n", want: "\r\n"},
		{name: "empty", in: "", want: ""},
		{name: "folded", in: "A: 1\r\n  continued\r\n\r\nbody", want: "A: 1\r\n  continued\r\n\r\n"},
		// The empty line falls across the 4 KiB reads.
		{name: "over a read boundary", in: strings.Repeat("X: y\r\n", 682) + "Z:\r\n\r\nbody", want: strings.Repeat("X: y\r\n", 682) + "Z:\r\n\r\n"},
		{name: "long header", in: long + long + "\r\nbody", want: long + long + "\r\n"},
		{name: "just within the limit", in: "A: 1\r\n\r\nbody", want: "A: 1\r\n\r\n", limit: 8},
		{name: "over the limit", in: long + "\r\nbody", limit: 4096, tooLarge: true},
		{name: "no end within the limit", in: long + long, limit: 6000, tooLarge: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			limit := tt.limit
			if limit == 0 {
				limit = MaxHeaderSize
			}
			got, err := readHeader(envelope.Bytes(tt.in), limit)
			if tt.tooLarge {
				if !errors.Is(err, ErrHeaderTooLarge) {
					t.Fatalf("readHeader = %d bytes, %v; want ErrHeaderTooLarge", len(got), err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("readHeader = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestHeaderEndAcrossEveryBoundary cuts the reads at every offset near
// the empty line: the header must be found whatever the split.
func TestHeaderEndAcrossEveryBoundary(t *testing.T) {
	t.Parallel()
	msg := "Subject: x\r\nFrom: y\r\n\r\nbody\r\n"
	for cut := 1; cut < len(msg); cut++ {
		hdr := []byte(msg[:cut])
		end := headerEnd(hdr, 0)
		scanned := max(len(hdr)-2, 0)
		if end < 0 {
			hdr = append(hdr, msg[cut:]...)
			end = headerEnd(hdr, scanned)
		}
		if end != 23 {
			t.Errorf("cut at %d: header ends at %d, want 23", cut, end)
		}
	}
}
