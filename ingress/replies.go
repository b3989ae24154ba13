package ingress

import (
	"fmt"

	"github.com/emersion/go-smtp"

	"fanmail/expander"
)

// The session's fixed replies, each with its RFC 3463 status. Replies
// that carry a list's or a limit's own words are made where they arise.
var (
	errTempStore = reply(451, 4, 3, 0, "Temporary local problem, please try again later")
	errNoSpace   = reply(452, 4, 3, 1, "Insufficient system storage; try again later")

	errTooManyRcpts = reply(452, 4, 5, 3, "Error: too many recipients")
	errNestedMail   = reply(503, 5, 5, 1, "Error: nested MAIL command")
	errHelloFirst   = reply(503, 5, 5, 1, "Error: send HELO/EHLO first")
	errNeedTLS      = reply(530, 5, 7, 0, "Must issue a STARTTLS command first")

	errLineTooLong    = reply(554, 5, 6, 0, "Message has a line over 2000 characters; RFC 5321 allows 1000")
	errNoTargets      = reply(554, 5, 4, 6, "Alias expansion left no deliverable recipients")
	errLoop           = reply(554, 5, 4, 6, "Mail loop detected: this post already went through this list")
	errHeaderTooLarge = reply(552, 5, 3, 4, fmt.Sprintf("Message header exceeds %d bytes", expander.MaxHeaderSize))
)

func reply(code, class, subject, detail int, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{class, subject, detail}, Message: text}
}
