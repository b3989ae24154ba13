package metrics

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"

	"fanmail/envelope"
)

// answers delivers each recipient with the status its entry says.
type answers map[string]envelope.Status

func (a answers) Deliver(_ context.Context, req envelope.Request) []envelope.Result {
	res := make([]envelope.Result, len(req.Recipients))
	for i, r := range req.Recipients {
		res[i] = envelope.Result{Recipient: r, Status: a[r]}
	}
	return res
}

// fanmail_recipients_total counts what delivery reported, with the
// recipients the queue gave up on at their lifetime added to bounced.
func TestRecipientsCountExpired(t *testing.T) {
	t.Parallel()
	expired := map[string]int64{"default": 0, "slow": 0}
	m := New(Sources{Expired: func() map[string]int64 { return expired }})
	d := m.Deliverer(answers{"a": envelope.Delivered, "b": envelope.Failed, "c": envelope.Deferred, "e": envelope.Delivered})
	d.Deliver(context.Background(), envelope.Request{Envelope: envelope.Envelope{Recipients: []string{"a", "b", "c"}}})
	d.Deliver(context.Background(), envelope.Request{Envelope: envelope.Envelope{Group: "slow", Recipients: []string{"c", "e"}}})
	expired["slow"] = 3

	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "fanmail_recipients_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			got[label(mt, "group")+"/"+label(mt, "status")] = mt.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"default/delivered": 1, "default/bounced": 1, "default/deferred": 1,
		"slow/delivered": 1, "slow/deferred": 1, "slow/bounced": 3,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fanmail_recipients_total (-want +got):\n%s", diff)
	}
	if c := m.sample(); c.Bounced != 4 || c.Delivered != 2 || c.Deferred != 2 {
		t.Errorf("status counts %+v, want 2 delivered, 2 deferred, 4 bounced", c)
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
