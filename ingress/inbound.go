package ingress

// The guard's read side. go-smtp reads the client through a bufio
// reader of its own, and what sits in that buffer is out of fanmail's
// sight; so the guard hands go-smtp the client's bytes one line at a
// time (a BDAT chunk as its bytes), and go-smtp's buffer never holds
// more than the line it is working on. Each command line is named on its
// way up, and go-smtp's reply to it is seen on its way down (guard.go),
// which is enough to follow the dialogue without parsing it twice: a
// DATA answered 354 is followed by the message up to the line ".", a
// BDAT not refused for its syntax by its chunk.
//
// That gives the guard three things go-smtp cannot do for fanmail:
//
//   - STARTTLS (starttls.go): when go-smtp answers the command, the guard
//     knows nothing the client sent after it has reached go-smtp, and
//     whether anything is waiting in its own buffer. Plaintext sent
//     after STARTTLS is never read as if it came through TLS (the
//     command injection of CVE-2011-0411).
//   - The bare RCPT TO:<postmaster> of RFC 5321 §4.5.1, which go-smtp's
//     parser refuses with 501: the guard rewrites the command to the
//     stand-in barePostmaster, which the session takes for postmaster.
//   - Byte counts at the SMTP layer, under TLS or not.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// inBufSize is the guard's read buffer. go-smtp refuses lines over 2000
// bytes; a line that fills the buffer without ending is handed on as it
// is, for go-smtp to refuse.
const inBufSize = 4096

// barePostmaster is what the guard hands go-smtp for the bare
// <postmaster>: an address go-smtp parses, in a domain that cannot
// exist (RFC 2606 .invalid), so it can only mean the bare one.
const barePostmaster = "postmaster@postmaster.invalid"

// inMode is what the next bytes from the client are.
type inMode uint8

const (
	inCommand inMode = iota // a command line
	inData                  // message lines after DATA's 354, through the line "."
	inChunk                 // the bytes of a BDAT chunk
)

// cmdKind is what the last command line handed to go-smtp was, as far
// as the guard cares.
type cmdKind uint8

const (
	cmdOther cmdKind = iota
	cmdData
	cmdBdat
	cmdStartTLS
)

// inbound is the guard's read state; only go-smtp's connection goroutine
// touches it (Read, and Write for STARTTLS).
type inbound struct {
	buf  []byte // read from the connection: buf[off:] not yet handed on
	off  int
	out  []byte // the rest of the piece being handed on
	err  error  // the connection's error, returned once buf is empty
	mode inMode

	chunk     int64   // bytes left of the BDAT chunk, or the size the last BDAT named
	last      cmdKind // the last command line handed on
	lastLine  []byte  // that line, when it was STARTTLS
	oneLine   bool    // the last piece was one whole line: nothing after it reached go-smtp
	midLine   bool    // the last piece ended inside a line
	dataStart bool    // inData: the next line starts after CRLF, where "." ends the message
}

// buffered reports whether the client sent bytes that go-smtp has not
// been given yet.
func (in *inbound) buffered() bool { return len(in.out) > 0 || in.off < len(in.buf) }

// Read hands go-smtp the next line, or part of a BDAT chunk.
func (g *guardConn) Read(p []byte) (int, error) {
	if g.lingering.Load() {
		return 0, net.ErrClosed
	}
	in := &g.in
	if len(in.out) == 0 {
		if err := g.nextPiece(); err != nil {
			return 0, err
		}
	}
	n := copy(p, in.out)
	in.out = in.out[n:]
	g.l.s.counters.bytesIn.Add(int64(n))
	return n, nil
}

// nextPiece sets in.out to what go-smtp gets next.
func (g *guardConn) nextPiece() error {
	in := &g.in
	if in.mode == inCommand && !in.midLine {
		// go-smtp has answered the last command, or is reading what
		// follows it without answering: its reply says which.
		g.mu.Lock()
		reply := g.replyCode
		g.replyCode = 0
		g.mu.Unlock()
		switch {
		case in.last == cmdData && reply == 354:
			in.mode, in.dataStart = inData, true
		case in.last == cmdBdat && reply != 501 && in.chunk > 0:
			in.mode = inChunk
		}
		in.last, in.lastLine = cmdOther, nil
	}
	if in.mode == inChunk {
		if in.off == len(in.buf) {
			if err := g.fill(); err != nil {
				return err
			}
		}
		n := min(int64(len(in.buf)-in.off), in.chunk)
		in.out = in.buf[in.off : in.off+int(n)]
		in.off += int(n)
		if in.chunk -= n; in.chunk == 0 {
			in.mode = inCommand
		}
		in.oneLine, in.midLine = false, false
		return nil
	}
	line, err := g.line()
	if err != nil {
		return err
	}
	starts := !in.midLine
	in.midLine = line[len(line)-1] != '\n'
	in.oneLine = starts && !in.midLine
	switch {
	case in.mode == inData:
		if in.dataStart && string(line) == ".\r\n" {
			in.mode = inCommand
		}
		in.dataStart = bytes.HasSuffix(line, []byte("\r\n"))
	case in.oneLine:
		line = in.command(line)
	}
	in.out = line
	return nil
}

// command names a command line and returns what go-smtp gets for it.
func (in *inbound) command(line []byte) []byte {
	text := strings.TrimRight(string(line), "\r\n")
	verb, arg, _ := strings.Cut(text, " ")
	switch {
	case strings.HasPrefix(strings.ToUpper(text), "STARTTLS"): // as go-smtp's parseCmd
		in.last, in.lastLine = cmdStartTLS, line
	case strings.EqualFold(verb, "DATA"):
		in.last = cmdData
	case strings.EqualFold(verb, "BDAT"):
		// As go-smtp reads it: a size (32 bits) and perhaps LAST.
		f := strings.Fields(arg)
		if len(f) == 1 || len(f) == 2 && strings.EqualFold(f[1], "LAST") {
			if n, err := strconv.ParseUint(f[0], 10, 32); err == nil {
				in.last, in.chunk = cmdBdat, int64(n)
			}
		}
	case strings.EqualFold(verb, "RCPT"):
		if rest, ok := barePostmasterArg(arg); ok {
			return []byte("RCPT TO:<" + barePostmaster + ">" + rest + "\r\n")
		}
	}
	return line
}

// barePostmasterArg reports whether a RCPT argument is TO:<postmaster>
// (any case, RFC 5321 §4.5.1), and returns the parameters after it.
func barePostmasterArg(arg string) (string, bool) {
	const to = "TO:"
	if len(arg) < len(to) || !strings.EqualFold(arg[:len(to)], to) {
		return "", false
	}
	path := strings.TrimLeft(arg[len(to):], " ")
	const pm = "<postmaster>"
	if len(path) < len(pm) || !strings.EqualFold(path[:len(pm)], pm) {
		return "", false
	}
	rest := path[len(pm):]
	if rest != "" && rest[0] != ' ' {
		return "", false
	}
	return rest, true
}

// line returns the next line from the buffer, reading until it ends or
// the buffer is full; part of one only when the connection ended.
func (g *guardConn) line() ([]byte, error) {
	in := &g.in
	for {
		rest := in.buf[in.off:]
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			in.off += i + 1
			return rest[:i+1], nil
		}
		if len(rest) > 0 && (len(rest) == inBufSize || in.err != nil) {
			in.off = len(in.buf)
			return rest, nil
		}
		if err := g.fill(); err != nil {
			return nil, err
		}
	}
}

// fill reads more from the connection into the buffer, after what is
// there; it returns the connection's error only when nothing is left.
func (g *guardConn) fill() error {
	in := &g.in
	if in.err != nil {
		if in.off < len(in.buf) {
			return nil
		}
		return in.err
	}
	if in.buf == nil {
		in.buf = make([]byte, 0, inBufSize)
	}
	n := copy(in.buf[:cap(in.buf)], in.buf[in.off:])
	in.buf, in.off = in.buf[:n], 0
	m, err := g.readConn(in.buf[n:cap(in.buf)])
	in.buf = in.buf[:n+m]
	if err != nil {
		in.err = err
		if len(in.buf) == 0 {
			return err
		}
	}
	return nil
}

// readConn reads from the connection, through TLS once it is on, and
// turns the end of the session's lifetime into a 421 of its own, rather
// than go-smtp's "Idle timeout", and a close.
func (g *guardConn) readConn(p []byte) (int, error) {
	n, err := g.cur().Read(p)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || time.Now().Before(g.end) {
		return n, err
	}
	g.mu.Lock()
	first := !g.expired
	g.expired = true
	g.mu.Unlock()
	if first {
		g.l.s.log.Info("session closed: lifetime reached", "client", g.remote,
			"session_timeout", g.l.s.cfg.SessionTimeout)
	}
	_ = g.Conn.SetWriteDeadline(time.Now().Add(rejectTimeout))
	_, _ = io.WriteString(g.cur(), fmt.Sprintf("421 4.4.2 %s Error: session time limit exceeded\r\n", g.l.s.cfg.Hostname))
	g.hangUp()
	return n, fmt.Errorf("session lifetime: %w", net.ErrClosed)
}
