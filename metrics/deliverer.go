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
	return queuegroups.Wrap(next, m.deliver)
}

func (m *Metrics) deliver(ctx context.Context, req envelope.Request, next queuegroups.Deliverer) []envelope.Result {
	results := next.Deliver(ctx, req)
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
		m.outcomes.WithLabelValues(group, "delivered").Add(float64(delivered))
		if !req.Received.IsZero() {
			// One observation per recipient: they were all delivered
			// in this attempt, so they share its latency.
			h := m.latency.WithLabelValues(group)
			lat := time.Since(req.Received).Seconds()
			for range delivered {
				h.Observe(lat)
			}
		}
	}
	if deferred > 0 {
		m.outcomes.WithLabelValues(group, "deferred").Add(float64(deferred))
	}
	if bounced > 0 {
		m.outcomes.WithLabelValues(group, "bounced").Add(float64(bounced))
	}
	return results
}
