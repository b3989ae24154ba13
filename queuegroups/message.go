package queuegroups

import (
	"fmt"
	"time"

	"fanmail/envelope"
)

// Message is an accepted post as the expander hands it to the queue: the
// content stored once, and the parts (one per expanded list or alias)
// whose envelopes all share it.
type Message struct {
	ID       string        // from an IDSource, chosen before expansion so headers can name it
	Received time.Time     // when the post was accepted
	Body     envelope.Body // the post as received (header and body, CRLF line ends); read, never kept, by Enqueue
	Parts    []Part
	Mode     DeliveryMode // how soon the runners take it; zero is the spool's default
	// SMTPUTF8 says the post came with MAIL's SMTPUTF8 parameter (RFC
	// 6531): it is kept with the message and handed to delivery, which
	// asks the next server for the extension when the message needs it.
	SMTPUTF8 bool

	queued int // recipients Enqueue stored
}

// DeliveryMode is sendmail's DeliveryMode for one message.
type DeliveryMode int

const (
	// ModeDefault takes the spool's configured mode.
	ModeDefault DeliveryMode = iota
	// ModeBackground hands every envelope to the runners as soon as the
	// message is durable, while the SMTP client gets its 250 (sendmail b).
	ModeBackground
	// ModeInteractive makes the first attempt of every envelope before
	// Enqueue returns, so the 250 follows delivery (sendmail i).
	ModeInteractive
	// ModeQueue only stores the message; the group's next queue run,
	// one interval later, delivers it (sendmail q). Load control uses it
	// to keep accepting while delivery is paused.
	ModeQueue
)

// Part is one expansion of the message: the header lines prepended to
// Body for its recipients (Received, List-Id) and its envelopes, each
// with its sender and the queue group the expander routed it to. The
// envelopes are Envelopes, then whatever Stream yields: a list's members
// are streamed from the store while Enqueue writes them to the journal,
// so no stage holds a big list whole.
//
// The copy is Prefix, then Body from Skip on, with Insert put in at
// InsertAt: the header lines a forward adds (Skip 0), or a list's own
// header in place of the post's (Skip the post's header) and the change
// its footer makes. Body is stored once whatever the parts.
type Part struct {
	Prefix []byte
	// Skip is how many bytes at the start of Body the copy leaves out.
	Skip int64
	// Insert is put in at InsertAt, an offset of Body at or after Skip;
	// nil for nothing.
	Insert   []byte
	InsertAt int64
	// Personal, for a list whose setting personalize is not off, has
	// delivery make each member its own copy from the one stored here:
	// the envelopes stay as the expander cut them, and the queue keeps
	// Personal once with the part, never per member.
	Personal envelope.Personal

	Envelopes []envelope.Envelope
	Stream    EnvelopeStream // nil: Envelopes are all
}

// checkLayout reports a part whose layout does not fit a body of size
// bytes.
func (p *Part) checkLayout(size int64) error {
	if p.Skip < 0 || p.Skip > size || (p.Insert != nil && (p.InsertAt < p.Skip || p.InsertAt > size)) {
		return fmt.Errorf("part layout skip %d, insert at %d does not fit a body of %d bytes", p.Skip, p.InsertAt, size)
	}
	return nil
}

// layout is the part's layout as the spool keeps it.
func (p *Part) layout() partState {
	return partState{prefix: p.Prefix, skip: p.Skip, insert: p.Insert, insertAt: p.InsertAt, personal: p.Personal}
}

// EnvelopeStream calls yield with each envelope in turn and returns the
// first error, of its own or from yield. Enqueue calls it once; yield
// does not keep the envelope's Recipients slice, which the stream may
// reuse.
type EnvelopeStream func(yield func(envelope.Envelope) error) error

// Queued is how many recipients Enqueue stored.
func (m *Message) Queued() int { return m.queued }
