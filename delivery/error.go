package delivery

import (
	"fmt"
	"strconv"
	"strings"

	"fanmail/envelope"
)

// Error is the one delivery error: a remote reply or a local condition,
// permanent or temporary. Check it with errors.As. Errors that are not an
// *Error are treated as temporary (a lost connection, a timeout).
type Error struct {
	Permanent bool   // a 5xx reply or a condition retrying cannot fix
	Code      int    // SMTP reply code; 0 for local errors
	Enhanced  string // RFC 3463 status such as "4.4.1"; may be empty
	Command   string // what was being done: "connect", "EHLO", "RCPT TO", ...
	Line      string // the remote reply text, or a description of the local error
	Host      string // the MX host name, if one was involved
	Relay     string // host:port dialled, if one was involved
	Err       error  // the underlying cause, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Command != "" {
		b.WriteString(e.Command)
		b.WriteString(": ")
	}
	b.WriteString(e.reply().String())
	if e.Err != nil && !strings.Contains(e.Line, e.Err.Error()) {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// reply is the error as the reply it gives its recipients.
func (e *Error) reply() envelope.Reply {
	return envelope.Reply{Code: e.Code, Enhanced: e.Enhanced, Text: e.Line, Host: e.Host}
}

func (e *Error) Unwrap() error { return e.Err }

// status is the verdict this error gives a recipient.
func (e *Error) status() envelope.Status {
	if e.Permanent {
		return envelope.Failed
	}
	return envelope.Deferred
}

// replyError builds an Error from a reply line. RFC 5321 §4.2.1: the
// first digit decides; anything but 5 is temporary here.
func replyError(cmd string, code int, msg, relay string) *Error {
	r := serverReply(code, msg)
	return &Error{Permanent: code/100 == 5, Code: code, Enhanced: r.Enhanced, Command: cmd, Line: r.Text, Relay: relay}
}

// serverReply parses a reply as net/textproto returns it: the code, and
// the text of every line joined by "\n".
func serverReply(code int, msg string) envelope.Reply {
	return envelope.ParseReply(strconv.Itoa(code) + " " + msg)
}

// localError is a condition found on this side, with an RFC 3463 code.
func localError(permanent bool, enhanced, cmd, relay string, cause error, format string, args ...any) *Error {
	return &Error{Permanent: permanent, Enhanced: enhanced, Command: cmd, Line: fmt.Sprintf(format, args...), Relay: relay, Err: cause}
}
