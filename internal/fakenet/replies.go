package fakenet

import (
	"strings"

	"github.com/emersion/go-smtp"
)

// RcptReplies scripts a sink's RCPT replies by recipient: a recipient
// that starts with a key (such as "gone@") gets that key's reply, the
// longest key winning; every other recipient is accepted. Its Hook is a
// SinkOptions.RcptHook.
type RcptReplies map[string]*smtp.SMTPError

// Hook answers RCPT TO:<to> as r says.
func (r RcptReplies) Hook(_, to string) error {
	var reply *smtp.SMTPError
	longest := -1
	for prefix, rp := range r {
		if len(prefix) > longest && strings.HasPrefix(to, prefix) {
			reply, longest = rp, len(prefix)
		}
	}
	if reply == nil {
		return nil // not a nil *SMTPError in a non-nil error
	}
	return reply
}
