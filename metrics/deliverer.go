package metrics

import (
	"context"
	"time"

	"fanmail/envelope"
	"fanmail/queuegroups"
)

// Deliverer wraps the queue's deliverer and counts each recipient's
// outcome per queue group, and the time from acceptance to each 2xx.
// These are the numbers of what delivery told the queue: a recipient
// deferred until the queue lifetime runs out is counted as deferred at
// each attempt; its final failure is the queue's (logged as "giving
// up"), which the collector adds to bounced from Sources.Expired.
func (m *Metrics) Deliverer(next queuegroups.Deliverer) queuegroups.Deliverer {
	return &deliverer{SlotsOf: queuegroups.SlotsOf{Next: next}, m: m}
}

// deliverer passes the wrapped deliverer's Slots on (SlotsOf), which
// the queue uses to admit as many deliveries per destination as it can
// take.
type deliverer struct {
	queuegroups.SlotsOf
	m *Metrics
}

func (d *deliverer) Deliver(ctx context.Context, req envelope.Request) []envelope.Result {
	results := d.Next.Deliver(ctx, req)
	group := req.Group
	if group == "" {
		group = queuegroups.DefaultGroup
	}
	var delivered, deferred, bounced int
	for _, r := range results {
		switch r.Status {
		case envelope.Delivered:
			delivered++
		case envelope.Failed:
			bounced++
		default:
			deferred++
		}
	}
	if delivered > 0 {
		d.m.outcomes.WithLabelValues(group, "delivered").Add(float64(delivered))
		if !req.Received.IsZero() {
			// One observation per recipient: they were all delivered
			// in this attempt, so they share its latency.
			h := d.m.latency.WithLabelValues(group)
			lat := time.Since(req.Received).Seconds()
			for range delivered {
				h.Observe(lat)
			}
		}
	}
	if deferred > 0 {
		d.m.outcomes.WithLabelValues(group, "deferred").Add(float64(deferred))
	}
	if bounced > 0 {
		d.m.outcomes.WithLabelValues(group, "bounced").Add(float64(bounced))
	}
	return results
}

var _ queuegroups.Slotter = (*deliverer)(nil)
