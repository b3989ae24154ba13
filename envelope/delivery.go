package envelope

import (
	"io"
	"time"
)

// Request is one delivery request (Postfix's deliver_request): an
// envelope, whose recipients all share one destination domain, and the
// message to send them. The queue hands delivery plain Requests and gets
// a Result per recipient back; delivery never reaches back into the
// queue, and the queue knows delivery only through these types.
type Request struct {
	QueueID string // for logs only
	// Received is when the message was accepted, so that the time from
	// acceptance to delivery can be measured.
	Received time.Time
	Envelope
	// Attempts is how many attempts of this envelope came before this
	// one; 0 is its first. Delivery reads a first attempt's 451 4.7.1 as
	// greylisting, and logs it.
	Attempts int
	Size     int64            // exact size of what Open returns, for SIZE=
	Open     func() io.Reader // a fresh reader over the whole message each call
	// EightBit says the message has 8-bit content; when false, delivery
	// scans it only if a server lacks 8BITMIME.
	EightBit bool
	// SMTPUTF8 says the message needs SMTPUTF8 (RFC 6531), as when it was
	// received with that parameter; non-ASCII addresses need it anyway.
	SMTPUTF8 bool
	// Personal, when its Mode is not PersonalizeOff, makes each
	// recipient its own transaction: delivery asks its Personalizer for
	// the member's sender and header fields, sent in front of Open's
	// bytes (and counted in SIZE= on top of Size).
	Personal Personal
	// Progress, if set, is called after each SMTP transaction with the
	// recipients it settled for good (Delivered or Failed): their
	// indexes in Recipients and their results. The queue records them
	// before the next transaction starts, so a crash later in the same
	// Deliver never sends them again. It is called from Deliver's own
	// goroutine; each recipient is reported at most once.
	Progress func(idx []int, results []Result)
}

// Only is r for the recipients at idx (indexes into r.Recipients) alone,
// so that a deliverer can hand part of an envelope on: its Progress, if
// set, reports them by their indexes in r again, and an index outside
// the part as -1.
func (r Request) Only(idx []int) Request {
	part := r
	part.Recipients = make([]string, len(idx))
	for k, i := range idx {
		part.Recipients[k] = r.Recipients[i]
	}
	if r.Progress != nil {
		part.Progress = func(sub []int, res []Result) {
			orig := make([]int, len(sub))
			for k, j := range sub {
				orig[k] = -1
				if j >= 0 && j < len(idx) {
					orig[k] = idx[j]
				}
			}
			r.Progress(orig, res)
		}
	}
	return part
}

// Status is the outcome of one recipient's attempt.
type Status int

const (
	Delivered Status = iota + 1 // 2xx: the receiver took responsibility
	Deferred                    // 4xx or a network/DNS failure: try again later
	Failed                      // 5xx or a permanent condition such as null MX
)

// statusNames are the Statuses as Postfix logs them (status=sent).
var statusNames = [...]string{Delivered: "sent", Deferred: "deferred", Failed: "bounced"}

func (s Status) String() string { return enumName(statusNames[:], s, "status") }

// Result is what happened to one recipient, with the reply that decided
// it: Code is 0 when no reply was received, and Host names the MX that
// answered, for a DSN's Remote-MTA.
type Result struct {
	Recipient string
	Status    Status
	Reply
	Relay string // host:port of the MX that answered, if any
	// RetryAfter, when positive, is how soon a Deferred recipient is worth
	// retrying instead of the queue's normal backoff (zero): short when
	// the destination was only busy or throttling, the remaining time
	// when it is suspended, the next useful moment when it greylisted.
	// With Code 0 nothing was sent to a server for the recipient (busy,
	// suspended), which is no attempt.
	RetryAfter time.Duration
}
