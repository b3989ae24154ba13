// Package envelope is a leaf package that every stage of the pipeline
// shares: the Body (a message's content, read at an offset, never needed
// whole in memory), the Envelope (who one SMTP transaction is from and
// to, and the queue group that holds it), the Reply (what a server, or fanmail
// itself, answered for a recipient), and the hand-off between the queue
// and delivery: a Request for one envelope and a Result per recipient.
// The expander cuts envelopes, the queue stores them and hands them to
// delivery as Requests, delivery answers with Results, the queue records
// their Replies and DSNs quote them; each stage uses these types rather
// than a copy of its own, so no stage imports the one after it for them.
package envelope

import "fmt"

// LocalDomain is the domain of envelopes whose recipients are the
// |program and /file targets of an aliases file: a bracketed name, which
// no real domain can be. Delivery runs the program or appends to the
// file instead of speaking SMTP.
const LocalDomain = "[local]"

// Envelope is one SMTP transaction's addressing: a sender and recipients
// that all share one destination domain.
type Envelope struct {
	Sender     string // MAIL FROM; "" is the null sender
	Domain     string // lowercase destination domain of every recipient, or LocalDomain
	Recipients []string
	// Group is the queue group the expander routed the domain to; ""
	// means the default group.
	Group string
}

// Local returns the envelope that delivers one |program or /file target
// of an aliases file.
func Local(sender, target string) Envelope {
	return Envelope{Sender: sender, Domain: LocalDomain, Recipients: []string{target}}
}

// IsLocal reports whether e is delivered locally (LocalDomain) rather
// than over SMTP.
func (e Envelope) IsLocal() bool { return e.Domain == LocalDomain }

// enumName is names[v], the name of an enum's value, or kind(v) for a
// value without one.
func enumName[T ~int | ~byte](names []string, v T, kind string) string {
	if int(v) >= 0 && int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", kind, int(v))
}
