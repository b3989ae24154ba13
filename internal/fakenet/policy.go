package fakenet

import (
	"time"

	"github.com/emersion/go-smtp"
)

// The replies of SinkOptions' receiver behaviours, worded as the large
// providers and Postfix word them.
var (
	replyThrottled = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many messages on this connection, try again later"}
	replyTooManyRcpts = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3},
		Message: "Too many recipients"}
	replyGreylisted = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: "Greylisted: this is a first delivery attempt, please try again later"}
)

// mailReply applies MaxMsgsPerConn to a MAIL FROM on tc: past the cap
// the reply is 421 and the connection closes after it.
func (s *Sink) mailReply(tc *trackedConn) error {
	limit := s.opts.MaxMsgsPerConn
	if limit <= 0 || tc == nil {
		return nil
	}
	if tc.mails >= limit {
		s.mu.Lock()
		s.stats.Throttled++
		s.mu.Unlock()
		tc.batch.hangUpAfterReply()
		return replyThrottled
	}
	tc.mails++
	return nil
}

// rcptReply chooses the reply to RCPT TO:<to> from sender from, with
// accepted recipients already in the transaction: the recipient limit
// first, then RcptHook (unknown users and the like), then greylisting,
// in the order Postfix applies its restrictions and then a policy
// service such as postgrey.
func (s *Sink) rcptReply(from, to string, accepted int) error {
	if s.opts.MaxRcpts > 0 && accepted >= s.opts.MaxRcpts {
		s.mu.Lock()
		s.stats.TooManyRcpts++
		s.mu.Unlock()
		return replyTooManyRcpts
	}
	if h := s.opts.RcptHook; h != nil {
		if err := h(from, to); err != nil {
			return err
		}
	}
	if window := s.opts.Greylist; window > 0 {
		now := time.Now()
		k := greyKey{from, to}
		s.mu.Lock()
		defer s.mu.Unlock()
		first, seen := s.grey[k]
		if !seen {
			s.grey[k] = now
		}
		if !seen || now.Sub(first) < window {
			s.stats.Greylisted++
			return replyGreylisted
		}
	}
	return nil
}
