package ingress

// Per-session limits: limitSession wraps the session that takes posts
// (ingress.go) and answers for it whatever a limit decides, so the work
// and the bounds on it are read apart. It counts every RCPT of a
// transaction, rejected ones too, refuses new mail while the spool's disk
// is below its floor, refuses a nested MAIL, and reports each of its
// replies to the connection's guard (guard.go), which counts errors and
// closes the session at the limit.

import (
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-smtp"

	"fanmail/address"
)

// limitSession is a session held to the server's per-session limits.
type limitSession struct {
	*session
	g     *guardConn
	rcpts int  // RCPT commands in this transaction, rejected ones included
	inTx  bool // MAIL was accepted and the transaction not yet over
}

// newLimitSession wraps ss; its connection must come from the server's
// listener, which is what counts sessions and errors.
func newLimitSession(ss *session) (smtp.Session, error) {
	c := ss.conn.Conn()
	g, ok := c.(*guardConn)
	if !ok {
		ss.srv.log.Error("SMTP session on a connection the listener did not guard", "conn", fmt.Sprintf("%T", c))
		return nil, errTempStore
	}
	ss.guard = g
	if helo := ss.conn.Hostname(); heloName(helo) != helo {
		ss.srv.log.Info("EHLO name is not a domain or address literal; Received says unknown",
			"client", ss.remote, "helo", fmt.Sprintf("%.100q", helo))
	}
	return &limitSession{session: ss, g: g}, nil
}

// reply reports the session's answer err to the guard and returns it, or
// the 421 that ends the session when it is one error too many.
func (ls *limitSession) reply(err error, a answer) error {
	if a == answerOK && err != nil {
		a = answerError
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code < 400 {
			a = answerOK // the 250 that carries Data's queue ID
		}
	}
	if ls.g.own(a) {
		ls.srv.countRefused("too_many_errors")
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
			Message: ls.srv.cfg.Hostname + " Error: too many errors"}
	}
	return err
}

func (ls *limitSession) Reset() {
	ls.rcpts, ls.inTx = 0, false
	ls.g.newTransaction()
	ls.g.setTransaction(false)
	ls.session.Reset()
}

func (ls *limitSession) Mail(from string, opts *smtp.MailOptions) error {
	switch {
	case ls.g.hungUp():
		return ls.reply(nil, answerError)
	case ls.inTx:
		ls.session.rejected("MAIL", "nested_mail", "from", from)
		return ls.reply(errNestedMail, answerError)
	case ls.g.helloPending():
		// RFC 3207 §4.2: after STARTTLS the client starts over with EHLO.
		ls.session.rejected("MAIL", "no_ehlo_after_starttls", "from", from)
		return ls.reply(errHelloFirst, answerError)
	case ls.srv.load.lowDisk(opts.Size):
		ls.session.rejected("MAIL", "low_disk", "from", from)
		return ls.reply(errNoSpace, answerError)
	}
	err := ls.session.Mail(from, opts)
	ls.inTx = err == nil
	ls.g.setTransaction(ls.inTx)
	return ls.reply(err, answerOK)
}

func (ls *limitSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if ls.g.hungUp() {
		return ls.reply(nil, answerError)
	}
	ls.rcpts++
	if ls.rcpts > ls.srv.cfg.MaxRecipients {
		ls.session.rejected("RCPT", "too_many_recipients", "rcpt", to)
		return ls.reply(errTooManyRcpts, answerExcess)
	}
	return ls.reply(ls.session.Rcpt(to, opts), answerOK)
}

func (ls *limitSession) Data(r io.Reader) error {
	switch {
	case ls.g.hungUp():
		return ls.reply(nil, answerError)
	case ls.srv.load.lowDisk(0):
		// Checked again before the body is read: the disk may have
		// filled since MAIL.
		ls.session.rejected("DATA", "low_disk")
		return ls.reply(errNoSpace, answerError)
	}
	err := ls.session.Data(r)
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code == 250 {
		ls.g.forgive()
	}
	return ls.reply(err, answerOK)
}

// heloName is the client's EHLO or HELO name as it may appear in a
// Received header: a domain (RFC 5321 §4.1.2 Domain, lowercased) or an
// address literal, else "unknown", as Postfix writes for a client it
// cannot name; the name as given is only ever logged, quoted.
func heloName(h string) string {
	for i := 0; i < len(h); i++ {
		if h[i] <= ' ' || h[i] >= 0x7f {
			return "unknown" // CR, LF, blanks, controls, and UTF-8 (no SMTPUTF8 here)
		}
	}
	m, err := address.Parse("postmaster@" + h)
	if err != nil || h == "" {
		return "unknown"
	}
	return m.Domain
}
