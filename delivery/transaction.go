package delivery

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"fanmail/envelope"
)

// command kinds in one mail transaction.
const (
	cmdRSET = iota
	cmdMAIL
	cmdRCPT
	cmdDATA
)

// maxPipelined bounds one pipelined group: its replies, about 30 bytes
// each (under 8 KiB in all), fit in any socket buffer. It holds a whole
// transaction of the default 100 recipients with its RSET, MAIL and
// DATA: a group split in two costs a round trip of its own.
const maxPipelined = 128

type txnCmd struct {
	kind int
	name string
	line string
	rcpt int // index into the envelope's recipients, for cmdRCPT
}

// outcome is what one transaction left for the caller to do.
type outcome int

const (
	// sentDone: every recipient has a verdict, except those a 452 turned
	// away after others were accepted, which go in the next transaction.
	sentDone outcome = iota
	// sentStale: c came from the cache (reused) and died before the
	// server answered anything; nothing is decided, try a fresh
	// connection.
	sentStale
	// sentConnLimit: a 421 to a later transaction on c, the server's
	// limit on messages per connection; nothing is decided (a 5xx RCPT
	// before it stands), try a fresh connection at once.
	sentConnLimit
	// sentThrottled: a 421 to the first transaction on c, the server
	// shedding load; nothing is decided, try again after a pause.
	sentThrottled
)

// send runs one mail transaction on c for the recipients idx of t's
// envelope and gives each of them a verdict, or reports why it could
// not (see outcome). Nothing can have been delivered when it cannot: the
// body is only sent after the 354 has been read.
//
// With PIPELINING (RFC 2920) the RSET, MAIL FROM, every RCPT TO and DATA
// go out in one write and the replies are read back in order; without it
// each command waits for its reply (RFC 5321 §4.1.4).
func (c *conn) send(t *txn, idx []int, reused bool) outcome {
	env := &t.env
	c.txns++
	mail, ok := c.mailCommand(t, idx)
	if !ok {
		return sentDone
	}
	var cmds []txnCmd
	if reused {
		// RFC 5321 §4.1.1.5: RSET starts a clean transaction and proves the
		// cached connection is still alive (sendmail's probe).
		cmds = append(cmds, txnCmd{kind: cmdRSET, name: "RSET", line: "RSET"})
	}
	cmds = append(cmds, txnCmd{kind: cmdMAIL, name: "MAIL FROM", line: mail})
	for _, i := range idx {
		if t.pending(i) {
			cmds = append(cmds, txnCmd{kind: cmdRCPT, name: "RCPT TO", line: "RCPT TO:<" + env.Recipients[i] + ">", rcpt: i})
		}
	}
	cmds = append(cmds, txnCmd{kind: cmdDATA, name: "DATA", line: "DATA"})

	pipelined := c.has("PIPELINING") && !c.cfg.NoPipelining
	var mailErr *Error
	var accepted []int
	full := false // a 452 turned recipients away after some were accepted
	written := 0
	for k, cm := range cmds {
		if pipelined && k == written {
			if mailErr != nil {
				return sentDone // every reply is in; no use sending the rest
			}
			// Groups are bounded so that neither side can block writing
			// while the other is writing too (RFC 2920 §3.1).
			written = min(len(cmds), k+maxPipelined)
			for _, w := range cmds[k:written] {
				if err := c.write(w.name, "%s", w.line); err != nil {
					return c.lost(t, idx, reused, k, err)
				}
			}
			if err := c.flush(cm.name); err != nil {
				return c.lost(t, idx, reused, k, err)
			}
			if k == 0 && t.dotConn == c {
				// The previous member's end of DATA reply comes first.
				t.finishDot()
			}
		}
		if !pipelined {
			// Lock-step: stop at the first command that can no longer help.
			if mailErr != nil || (cm.kind == cmdDATA && len(accepted) == 0) {
				break
			}
			if err := c.write(cm.name, "%s", cm.line); err != nil {
				return c.lost(t, idx, reused, k, err)
			}
			if err := c.flush(cm.name); err != nil {
				return c.lost(t, idx, reused, k, err)
			}
		}
		code, msg, err := c.readReply(cm.name, c.cfg.CommandTimeout)
		if err != nil {
			return c.lost(t, idx, reused, k, err)
		}
		if code == 421 && cm.kind != cmdRSET && mailErr == nil {
			// The server is closing (RFC 5321 §3.8): the transaction is
			// void, nobody in it is decided but a refused RCPT.
			return c.closing(t, cm.name, code, msg)
		}
		switch cm.kind {
		case cmdRSET:
			if code != 250 {
				// A server that cannot reset is not one to reuse; nothing
				// of this transaction counts, so start over elsewhere.
				c.broken = true
				return sentStale
			}
		case cmdMAIL:
			if code/100 != 2 {
				mailErr = replyError("MAIL FROM", code, msg, c.relay)
				t.settleIdx(idx, mailErr)
			}
		case cmdRCPT:
			switch {
			case mailErr != nil:
				// RFC 2920 §3.1: after a refused MAIL the RCPT replies are
				// read and ignored.
			case code/100 == 2:
				accepted = append(accepted, cm.rcpt)
			case len(accepted) > 0 && tooManyRcpts(code, msg):
				// RFC 5321 §4.5.3.1.10: too many recipients for one
				// transaction; the rest go in the next one.
				full = true
			default:
				t.setErr(cm.rcpt, replyError("RCPT TO", code, msg, c.relay))
			}
		case cmdDATA:
			if full {
				t.a.pool.learnRcpts(t.dest, len(accepted))
			}
			if code != 354 {
				if len(accepted) > 0 && mailErr == nil {
					t.settleIdx(accepted, replyError("DATA", code, msg, c.relay))
				}
				return sentDone
			}
			if len(accepted) == 0 || mailErr != nil {
				// RFC 2920 §3.1: a 354 with no recipient accepted gets an
				// empty message, which the server must refuse.
				if err := c.write("DATA", "."); err == nil && c.flush("DATA") == nil {
					_, _, _ = c.readReply("end of DATA", c.cfg.DataTimeout)
				}
				return sentDone
			}
			c.data(t, accepted)
			return sentDone
		}
	}
	return sentDone
}

// tooManyRcpts reports whether a RCPT reply says the transaction has as
// many recipients as the server takes (RFC 5321 §4.5.3.1.10: 452, whose
// RFC 3463 status is 4.5.3), rather than a full mailbox (452 4.2.2).
func tooManyRcpts(code int, msg string) bool {
	if code != 452 {
		return false
	}
	r := serverReply(code, msg)
	return r.Enhanced == "4.5.3" || r.Enhanced == "" && strings.Contains(strings.ToLower(r.Text), "too many recipients")
}

// closing handles a 421 to a command of a transaction: on a connection
// that already carried transactions it is the server's limit on messages
// per connection, which the group learns; on a fresh one the server is
// shedding load. Either way the recipients stay undecided for the caller
// to retry, and the reply is kept for them should the retries run out.
func (c *conn) closing(t *txn, cmd string, code int, msg string) outcome {
	t.last421 = replyError(cmd, code, msg, c.relay)
	if c.txns > 1 {
		t.a.pool.learnTxns(t.dest, c.txns-1)
		return sentConnLimit
	}
	return sentThrottled
}

// mailCommand builds MAIL FROM with the parameters the server offered,
// and fails the recipients up front when the server cannot take the
// message as it is: fanmail never converts or truncates a message.
func (c *conn) mailCommand(t *txn, idx []int) (string, bool) {
	env := &t.env
	sender, size := t.sender(), t.size()
	if limit := c.maxSize(); limit > 0 && size > limit {
		// RFC 1870 §6.1: over the fixed maximum is permanent.
		t.settleIdx(idx, localError(true, "5.3.4", "MAIL FROM", c.relay, nil,
			"message size %d exceeds the fixed maximum message size %d of %s", size, limit, c.relay))
		return "", false
	}
	utf8 := env.SMTPUTF8 || !isASCII(sender)
	for _, i := range idx {
		if t.pending(i) && !isASCII(env.Recipients[i]) {
			utf8 = true
			if !c.has("SMTPUTF8") {
				t.setErr(i, localError(true, "5.6.7", "RCPT TO", c.relay, nil,
					"non-ASCII recipient address and %s does not offer SMTPUTF8", c.relay))
			}
		}
	}
	if utf8 && !c.has("SMTPUTF8") && (env.SMTPUTF8 || !isASCII(sender)) {
		// RFC 6531 §3.2: without the extension the message cannot be sent.
		t.settleIdx(idx, localError(true, "5.6.7", "MAIL FROM", c.relay, nil,
			"message needs SMTPUTF8 and %s does not offer it", c.relay))
		return "", false
	}
	if !t.anyPending(idx) {
		return "", false
	}
	line := "MAIL FROM:<" + sender + ">"
	if c.has("SIZE") && size > 0 {
		line += fmt.Sprintf(" SIZE=%d", size)
	}
	if c.has("8BITMIME") {
		line += " BODY=8BITMIME"
	} else if t.eightBit() {
		// RFC 6152 §3: 8-bit data only to a server that offers 8BITMIME.
		t.settleIdx(idx, localError(true, "5.6.3", "MAIL FROM", c.relay, nil,
			"message has 8-bit content and %s does not offer 8BITMIME", c.relay))
		return "", false
	}
	if utf8 && c.has("SMTPUTF8") {
		line += " SMTPUTF8"
	}
	return line, true
}

// copyBufs recycles the buffers bodies are copied through: one per
// transaction would be most of delivery's garbage.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// data sends the body after a 354 and settles the accepted recipients
// with the reply to the final dot (RFC 5321 §4.5.3.2.5-6 timeouts).
func (c *conn) data(t *txn, accepted []int) {
	w := c.tp.DotWriter()
	body := &readErrReader{r: t.open()}
	buf := copyBufs.Get().(*[]byte)
	_, err := io.CopyBuffer(w, &blockDeadline{r: body, c: c}, *buf)
	copyBufs.Put(buf)
	if err != nil {
		c.broken = true
		c.nc.Close() // dropping the connection before the dot aborts the transaction
		if body.err != nil {
			t.settleIdx(accepted, localError(false, "4.3.0", "DATA", c.relay, body.err, "read message: %v", body.err))
			return
		}
		t.settleIdx(accepted, c.ioError("message body", err))
		return
	}
	if err := w.Close(); err != nil {
		c.broken = true
		t.settleIdx(accepted, c.ioError("end of DATA", err))
		return
	}
	if t.deferDot(c, accepted) {
		return
	}
	c.dotReply(t, accepted)
}

// dotReply reads the reply to the final dot and settles the accepted
// recipients with it.
func (c *conn) dotReply(t *txn, accepted []int) {
	code, msg, err := c.readReply("end of DATA", c.cfg.DataTimeout)
	if err != nil {
		t.settleIdx(accepted, asError(err, c))
		return
	}
	if code/100 == 2 {
		r := serverReply(code, msg)
		for _, i := range accepted {
			t.set(i, envelope.Delivered, code, r.Enhanced, r.Text, c.relay)
		}
		return
	}
	t.settleIdx(accepted, replyError("end of DATA", code, msg, c.relay))
}

// lost handles an I/O error after k replies: a reused connection that
// died before its first reply is stale; otherwise whoever is undecided is
// deferred, and the connection is never used again.
func (c *conn) lost(t *txn, idx []int, reused bool, k int, err error) outcome {
	c.broken = true
	if reused && k == 0 {
		return sentStale
	}
	t.settleIdx(idx, asError(err, c))
	return sentDone
}

// dataBlockTimeout bounds each block of the body (RFC 5321 §4.5.3.2.5:
// 3 minutes per TCP send), never beyond DataTimeout.
const dataBlockTimeout = 3 * time.Minute

// blockDeadline renews the write deadline before each block io.Copy
// hands on, so a large body on a slow link is bounded per block rather
// than as a whole.
type blockDeadline struct {
	r io.Reader
	c *conn
}

func (b *blockDeadline) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		_ = b.c.nc.SetWriteDeadline(time.Now().Add(min(dataBlockTimeout, b.c.cfg.DataTimeout)))
	}
	return n, err
}

// readErrReader remembers a read error so a failed copy can be blamed on
// the message source rather than the connection.
type readErrReader struct {
	r   io.Reader
	err error
}

func (r *readErrReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// eightBit scans the message for bytes over 127; it is only asked when a
// server lacks 8BITMIME, which is rare, so the extra read is cheap.
func (t *txn) eightBit() bool {
	if t.env.EightBit {
		return true
	}
	buf := make([]byte, 32<<10)
	r := t.env.Open()
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b >= 0x80 {
				return true
			}
		}
		if err != nil {
			return false
		}
	}
}

// asError returns err as an *Error, describing any other error as a lost
// connection.
func asError(err error, c *conn) *Error {
	var de *Error
	if errors.As(err, &de) {
		return de
	}
	return c.ioError("transaction", err)
}
