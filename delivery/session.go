package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// quitTimeout bounds QUIT: every verdict is in by then, so a slow server
// must not hold the delivery slot for a full command timeout.
const quitTimeout = 10 * time.Second

// failure is why one host could not take the session; the last one is
// what every recipient is deferred with if no host could.
type failure struct {
	code     int
	enhanced string
	text     string
	relay    string
}

// attempt runs one SMTP session with tg. done reports that the session
// got as far as MAIL FROM, so every recipient now has a verdict and no
// other host is tried; otherwise f says why this host was no use.
//
// Steps: connect, greeting, EHLO (HELO fallback is go-smtp's), MAIL FROM
// with SIZE, one RCPT per pending recipient, DATA only if one was accepted,
// QUIT. RFC 5321 §4.5.3.2 sets the timeouts.
func (t *txn) attempt(ctx context.Context, tg target) (done bool, f *failure) {
	conn, err := t.a.dialer.DialContext(ctx, "tcp", tg.addr)
	if err != nil {
		return false, &failure{enhanced: "4.4.1", text: fmt.Sprintf("connect to %s (%s): %v", tg.host, tg.addr, err)}
	}
	// go-smtp only knows deadlines; closing the socket is what interrupts
	// a blocked read when the caller gives up.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := smtp.NewClient(conn)
	defer c.Close()
	c.CommandTimeout = t.a.cfg.CommandTimeout
	c.SubmissionTimeout = t.a.cfg.DataTimeout
	relay := tg.addr

	if err := c.Hello(t.a.cfg.HELO); err != nil {
		// A refused greeting or EHLO is the host's problem, not the
		// message's: RFC 5321 §5.1 says try the next MX.
		return false, t.hostFailure(ctx, relay, "greeting/EHLO", err)
	}
	if err := c.Mail(t.env.Sender, &smtp.MailOptions{Size: t.env.Size}); err != nil {
		t.fail(ctx, c, relay, "MAIL FROM", err)
		return true, nil
	}
	accepted := 0
	for i, rcpt := range t.env.Recipients {
		if !t.pending(i) {
			continue
		}
		err := c.Rcpt(rcpt, nil)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			accepted++ // stays pending: the DATA reply decides
		case errors.As(err, &se) && se.Code != 421:
			t.set(i, statusFor(se.Code), se.Code, enhanced(se.EnhancedCode), se.Message, relay)
		default:
			// 421 or a broken connection ends the transaction: the
			// accepted recipients never got their message either.
			t.fail(ctx, c, relay, "RCPT TO", err)
			return true, nil
		}
	}
	if accepted == 0 {
		t.quit(c)
		return true, nil
	}

	w, err := c.Data()
	if err != nil {
		t.fail(ctx, c, relay, "DATA", err)
		return true, nil
	}
	// go-smtp clears deadlines after the 354, leaving the body unbounded.
	_ = conn.SetDeadline(time.Now().Add(t.a.cfg.DataTimeout))
	body := &readErrReader{r: t.env.Open()}
	if _, err := io.Copy(w, body); err != nil {
		if body.err != nil {
			// Dropping the connection before the final dot aborts the
			// transaction, so nothing half-read is delivered.
			conn.Close()
			t.settle(Deferred, 0, "4.3.0", fmt.Sprintf("read message: %v", body.err), relay)
			return true, nil
		}
		t.fail(ctx, c, relay, "message body", err)
		return true, nil
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.fail(ctx, c, relay, "end of DATA", err)
		return true, nil
	}
	enh, text := splitEnhanced(resp.StatusText)
	t.settle(Delivered, 250, enh, text, relay)
	t.quit(c)
	return true, nil
}

func (t *txn) quit(c *smtp.Client) {
	c.CommandTimeout = min(c.CommandTimeout, quitTimeout)
	_ = c.Quit()
}

// fail settles every pending recipient after err ended the transaction: a
// reply decides by its class, anything else is temporary. QUIT is sent
// only if the server is still talking to us (not after 421 or an I/O error).
func (t *txn) fail(ctx context.Context, c *smtp.Client, relay, cmd string, err error) {
	f := t.hostFailure(ctx, relay, cmd, err)
	st := Deferred
	if f.code >= 500 {
		st = Failed
	}
	t.settle(st, f.code, f.enhanced, f.text, relay)
	if f.code != 0 && f.code != 421 {
		t.quit(c)
	}
}

// hostFailure describes err from cmd: the remote reply if there was one.
func (t *txn) hostFailure(ctx context.Context, relay, cmd string, err error) *failure {
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		return &failure{code: se.Code, enhanced: enhanced(se.EnhancedCode), text: se.Message, relay: relay}
	case ctx.Err() != nil:
		return &failure{enhanced: "4.4.7", text: fmt.Sprintf("delivery interrupted during %s with %s: %v", cmd, relay, ctx.Err()), relay: relay}
	}
	return &failure{enhanced: "4.4.2", text: fmt.Sprintf("lost connection with %s during %s: %v", relay, cmd, err), relay: relay}
}

func statusFor(code int) Status {
	switch code / 100 {
	case 2:
		return Delivered
	case 5:
		return Failed
	}
	return Deferred // 4xx, and anything unexpected is temporary
}

// enhanced formats an RFC 3463 code, or "" if the server sent none.
func enhanced(ec smtp.EnhancedCode) string {
	if ec == smtp.EnhancedCodeNotSet || ec == smtp.NoEnhancedCode {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
}

// splitEnhanced separates a leading "x.y.z " from a success reply's text,
// which go-smtp leaves in place for 2xx replies.
func splitEnhanced(s string) (enh, text string) {
	first, rest, _ := strings.Cut(s, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return "", s
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil || p == "" {
			return "", s
		}
	}
	return first, rest
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
