package delivery

import (
	"bytes"
	"errors"
	"io"
	"strings"

	"fanmail/envelope"
)

// Per-member copies (envelope.Personal). An envelope of a personalized
// list is delivered like any other (one MX lookup, the group's limits,
// cached connections), but each member is a transaction of its own:
// deliverAll cuts chunks of one recipient, asks the Personalizer for
// that member's sender and header fields just before the transaction,
// and sends them in front of the stored copy. With PIPELINING the
// member's RSET, MAIL FROM, RCPT TO and DATA go in one write, as for any
// transaction, and the reply to a member's final dot is read after the
// next member's commands are written (RFC 2920 §3.1 lets message content
// start a group), so each member costs one round trip, not two. The
// reply is always read before the connection goes back to the cache.
// Progress is reported per member as its reply is read, so a crash
// resends only the member that was on the wire.

// personal reports whether t's recipients each get their own copy.
func (t *txn) personal() bool { return t.env.Personal.Mode != envelope.PersonalizeOff }

// personalize prepares recipient i's copy for the next transaction. A
// member whose copy cannot be made is deferred with the reason, and
// false returned.
func (t *txn) personalize(i int) bool {
	t.member = nil
	p := t.a.cfg.Personalizer
	if p == nil {
		t.setErr(i, localError(false, "4.3.5", "", "", nil, "list copies are personalized (%s) and no personalizer is configured", t.env.Personal.Mode))
		return false
	}
	m, err := p.Member(t.env.Personal, t.env.Sender, t.env.Recipients[i])
	if err != nil {
		t.setErr(i, localError(false, "4.3.0", "", "", err, "make the member's copy: %v", err))
		return false
	}
	if strings.ContainsAny(m.Sender, "\r\n<>") {
		t.setErr(i, localError(true, "5.1.7", "", "", nil, "bad sender address syntax %q", m.Sender))
		return false
	}
	t.member = &m
	return true
}

// sender is the MAIL FROM of the transaction about to be sent.
func (t *txn) sender() string {
	if t.member != nil {
		return t.member.Sender
	}
	return t.env.Sender
}

// size is the size of the copy about to be sent, for SIZE=.
func (t *txn) size() int64 {
	if t.member != nil {
		return t.env.Size + int64(len(t.member.Header))
	}
	return t.env.Size
}

// open returns the copy about to be sent.
func (t *txn) open() io.Reader {
	if t.member != nil && len(t.member.Header) > 0 {
		return io.MultiReader(bytes.NewReader(t.member.Header), t.env.Open())
	}
	return t.env.Open()
}

// deferDot reports whether the reply to the final dot of accepted, just
// sent on c, is left to be read with the next member's commands: only
// for a personalized envelope on a pipelining connection with another
// member still to go.
func (t *txn) deferDot(c *conn, accepted []int) bool {
	if !t.personal() || !c.has("PIPELINING") || c.cfg.NoPipelining || len(accepted) == 0 {
		return false
	}
	more := false
	for i := accepted[len(accepted)-1] + 1; i < len(t.results) && !more; i++ {
		more = t.pending(i)
	}
	if !more {
		return false
	}
	t.dot, t.dotConn = accepted, c
	return true
}

// finishDot reads the reply to a final dot left by deferDot, settles its
// recipients with it and reports them. A connection that broke since
// leaves them deferred: their message may or may not have arrived.
func (t *txn) finishDot() {
	if t.dot == nil {
		return
	}
	accepted, c := t.dot, t.dotConn
	t.dot, t.dotConn = nil, nil
	if c.broken {
		t.settleIdx(accepted, c.ioError("end of DATA", errDotUnread))
	} else {
		c.dotReply(t, accepted)
	}
	for _, i := range accepted {
		if t.results[i].Relay == c.relay {
			t.results[i].Host = c.host
		}
	}
	t.progress(accepted)
}

var errDotUnread = errors.New("connection lost before the reply to the end of DATA")
