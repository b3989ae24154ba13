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
	return &deliverer{m: m, next: next}
}

type deliverer struct {
	m    *Metrics
	next queuegroups.Deliverer
}

func (d *deliverer) Deliver(ctx context.Context, req envelope.Request) []envelope.Result {
	results := d.next.Deliver(ctx, req)
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

// Slots passes the question on to the wrapped deliverer, whose answer
// the queue uses to admit as many deliveries per destination as it can
// take; a deliverer that does not know destinations sets no limit.
func (d *deliverer) Slots(domain string) (string, int) {
	if s, ok := d.next.(queuegroups.Slotter); ok {
		return s.Slots(domain)
	}
	return domain, 0
}

// SlotsChanged passes on the wrapped deliverer's channel (nil, which
// never fires, if it has none).
func (d *deliverer) SlotsChanged() <-chan struct{} {
	if s, ok := d.next.(queuegroups.Slotter); ok {
		return s.SlotsChanged()
	}
	return nil
}
