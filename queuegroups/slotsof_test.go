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

// TestWrap: the wrapper delivers through its function, which is handed
// the wrapped deliverer, and passes the wrapped deliverer's Slots on.
func TestWrap(t *testing.T) {
	t.Parallel()
	inner := slottedDeliverer{changed: make(chan struct{})}
	var got Deliverer
	w := Wrap(inner, func(ctx context.Context, req envelope.Request, next Deliverer) []envelope.Result {
		got = next
		return []envelope.Result{{Recipient: req.Recipients[0], Status: envelope.Delivered}}
	})
	res := w.Deliver(context.Background(), envelope.Request{Envelope: envelope.Envelope{Recipients: []string{"a@a.example"}}})
	if len(res) != 1 || res[0].Recipient != "a@a.example" || res[0].Status != envelope.Delivered {
		t.Errorf("Deliver = %+v; want the function's results", res)
	}
	if got != Deliverer(inner) {
		t.Errorf("the function was handed %#v; want the wrapped deliverer", got)
	}
	s, ok := w.(Slotter)
	if !ok {
		t.Fatal("the wrapper is no Slotter")
	}
	if dest, n := s.Slots("a.example"); dest != "mx-of-a.example" || n != 3 {
		t.Errorf("Slots = %q, %d; want the wrapped deliverer's answer", dest, n)
	}
	if ch := s.SlotsChanged(); ch != inner.changed {
		t.Error("SlotsChanged is not the wrapped deliverer's channel")
	}
}
