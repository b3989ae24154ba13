package delivery

import (
	"bufio"
	"bytes"
	"io"

	"fanmail/envelope"
)

// maxHeaderScan bounds how much of a message needsSMTPUTF8 reads
// looking for the end of its header.
const maxHeaderScan = 1 << 20

// needsSMTPUTF8 reports whether req's message needs SMTPUTF8 on the wire
// as a whole: it came with the parameter (RFC 6531), and its sender or
// its header has non-ASCII in it. A post sent with SMTPUTF8 whose
// envelope and header are ASCII goes as an ordinary message, to any
// server (RFC 6531 §3.4: the parameter is not sent when nothing needs
// it). A non-ASCII recipient address needs the extension for that
// recipient alone, which the transaction checks per recipient.
func needsSMTPUTF8(req *envelope.Request) bool {
	if !req.SMTPUTF8 {
		return false
	}
	if !isASCII(req.Sender) {
		return true
	}
	return !asciiHeader(req.Open())
}

// asciiHeader reports whether the header r starts with, up to the empty
// line that ends it, is ASCII.
func asciiHeader(r io.Reader) bool {
	br := bufio.NewReader(io.LimitReader(r, maxHeaderScan))
	more := false // the line read is the rest of a longer one
	for {
		line, err := br.ReadSlice('\n')
		for _, b := range line {
			if b >= 0x80 {
				return false
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			more = true
			continue
		case err != nil, !more && len(bytes.TrimRight(line, "\r\n")) == 0:
			return true // the end of the header, or of the message
		}
		more = false
	}
}
