package queuegroups

import (
	"context"
	"testing"

	"fanmail/envelope"
)

type plainDeliverer struct{}

func (plainDeliverer) Deliver(context.Context, envelope.Request) []envelope.Result { return nil }

type slottedDeliverer struct {
	plainDeliverer
	changed chan struct{}
}

func (slottedDeliverer) Slots(domain string) (string, int) { return "mx-of-" + domain, 3 }
func (s slottedDeliverer) SlotsChanged() <-chan struct{}   { return s.changed }

// TestSlotsOf: a wrapper passes a Slotter's answers on, and sets no
// limit over a deliverer that knows no destinations.
func TestSlotsOf(t *testing.T) {
	t.Parallel()
	if dest, n := (SlotsOf{Next: plainDeliverer{}}).Slots("a.example"); dest != "a.example" || n != 0 {
		t.Errorf("over a plain deliverer: Slots = %q, %d; want the domain, no limit", dest, n)
	}
	if ch := (SlotsOf{Next: plainDeliverer{}}).SlotsChanged(); ch != nil {
		t.Error("over a plain deliverer: SlotsChanged is not nil")
	}
	inner := slottedDeliverer{changed: make(chan struct{})}
	if dest, n := (SlotsOf{Next: inner}).Slots("a.example"); dest != "mx-of-a.example" || n != 3 {
		t.Errorf("over a Slotter: Slots = %q, %d; want its answer", dest, n)
	}
	if ch := (SlotsOf{Next: inner}).SlotsChanged(); ch != inner.changed {
		t.Error("over a Slotter: SlotsChanged is not its channel")
	}
}
