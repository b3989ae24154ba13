// Package local is the delivery agent for the two local targets of an
// aliases file: |program (run with the message on stdin, as sendmail's
// prog mailer does) and /file (the message appended in mbox format). It
// sits beside the SMTP agent in the delivery stage and knows nothing of
// the queue: it takes a message, a target and limits, and returns a
// classified Result for the queue to record.
//
// Both targets run in a child process under the program user's
// credentials (uid, gid and that user's own group list), never with the
// server's privileges: a |program is /bin/sh -c, a /file is this very
// binary re-executed with FileHelperCommand, which checks the path as
// sendmail's safefile() does before it appends. A server that is not
// root cannot change user, so its children run as itself.
package local

import (
	"bufio"
	"bytes"
	"io"
)

// Status classifies one local delivery the way the queue records it.
type Status uint8

const (
	Delivered Status = iota
	Deferred         // try again later (EX_TEMPFAIL, timeout, lock busy, disk full)
	Failed           // permanent: bounce to the envelope sender
)

func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Deferred:
		return "deferred"
	}
	return "failed"
}

// Result is the outcome of one delivery; Reason is one line for the log
// and the DSN. Enhanced is an RFC 3463 status code when the outcome has a
// more precise one than its Status implies (EnhancedRefused), else "".
type Result struct {
	Status   Status
	Reason   string
	Enhanced string
}

// EnhancedRefused is the RFC 3463 code of a /file target refused by the
// safety checks (a symbolic link or hard link, an unsafe directory, a
// file the program user may not write): "other or undefined security
// status". The recipient fails, as in sendmail, which bounces such a
// target with EX_CANTCREAT ("550 5.0.0 Can't create output: Hard links
// not allowed").
const EnhancedRefused = "5.7.0"

// Credentials are who a child process runs as: uid, primary gid and the
// supplementary groups, which replace the server's own (setgroups).
type Credentials struct {
	UID, GID uint32
	Groups   []uint32 // the user's groups from the group database; empty means none
}

// Request is one message for one local target.
type Request struct {
	Message   io.Reader // the message, CRLF or LF line endings
	Sender    string    // envelope sender; "" = the null sender
	Recipient string    // the alias the target came from, for $RECIPIENT
	// Cred, when set, is who the |program and the /file helper run as,
	// so it owns files they create. nil: the server's own user.
	Cred *Credentials
}

// unixLines copies r to w converting CRLF to LF, as local mailers expect;
// with mbox it also quotes body lines starting with "From " as ">From "
// (mboxrd: any run of ">" before "From " gets one more). It returns
// whether the last line written ended in a newline.
func unixLines(w io.Writer, r io.Reader, mbox bool) (endsNL bool, err error) {
	br := bufio.NewReaderSize(r, 64*1024)
	bw := bufio.NewWriterSize(w, 64*1024)
	endsNL = true
	atStart := true
	for {
		line, rerr := br.ReadSlice('\n')
		if len(line) > 0 {
			if atStart && mbox && isFromLine(line) {
				if err := bw.WriteByte('>'); err != nil {
					return false, err
				}
			}
			full := line[len(line)-1] == '\n'
			if full {
				line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
			}
			if _, err := bw.Write(line); err != nil {
				return false, err
			}
			if full {
				if err := bw.WriteByte('\n'); err != nil {
					return false, err
				}
			}
			atStart, endsNL = full, full
		}
		if rerr == bufio.ErrBufferFull {
			continue // a long line: the rest follows, not at a line start
		}
		if rerr == io.EOF {
			return endsNL, bw.Flush()
		}
		if rerr != nil {
			return false, rerr
		}
	}
}

func isFromLine(line []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From "))
}
