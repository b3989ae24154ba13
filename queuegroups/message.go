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

// Part is one expansion of the message: its copy of the message and its
// envelopes, each with its sender and the queue group the expander
// routed it to. The copy is Prefix, then Body from Skip on, with Insert
// put in at InsertAt: the header lines a forward adds (Skip 0), or a
// list's own header in place of the post's (Skip the post's header) and
// the change its footer makes. Body is stored once whatever the parts.
type Part struct {
	Prefix []byte
	// Skip is how many bytes at the start of Body the copy leaves out.
	Skip int64
	// Insert is put in at InsertAt, an offset of Body at or after Skip;
	// nil for nothing.
	Insert   []byte
	InsertAt int64

	Envelopes []envelope.Envelope
}

// checkLayout reports a part whose layout does not fit a body of size
// bytes.
func (p *Part) checkLayout(size int64) error {
	if p.Skip < 0 || p.Skip > size || (p.Insert != nil && (p.InsertAt < p.Skip || p.InsertAt > size)) {
		return fmt.Errorf("part layout skip %d, insert at %d does not fit a body of %d bytes", p.Skip, p.InsertAt, size)
	}
	return nil
}

// Recipients counts every recipient of the message.
func (m *Message) Recipients() int {
	n := 0
	for _, p := range m.Parts {
		for _, e := range p.Envelopes {
			n += len(e.Recipients)
		}
	}
	return n
}
