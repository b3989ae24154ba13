package metrics

import (
	"context"
	"sync"
	"time"
)

// Status is what `fanmail status` shows of a running server.
type Status struct {
	Version  string       `json:"version"`
	Started  time.Time    `json:"started"`
	Uptime   float64      `json:"uptime_seconds"`
	Sessions int64        `json:"smtp_sessions"` // open now
	Groups   []GroupQueue `json:"queue_groups"`
	// Rates are the counts of the last minute (less just after start:
	// Window says how many seconds they cover).
	Window float64 `json:"window_seconds"`
	Rates  Counts  `json:"last_minute"`
}

// Counts are running totals of posts and recipients.
type Counts struct {
	Accepted  int64 `json:"posts_accepted"`
	Rejected  int64 `json:"commands_rejected"`
	Refused   int64 `json:"connections_refused"`
	Delivered int64 `json:"recipients_delivered"`
	Deferred  int64 `json:"recipients_deferred"`
	Bounced   int64 `json:"recipients_bounced"`
}

func (c Counts) minus(o Counts) Counts {
	return Counts{c.Accepted - o.Accepted, c.Rejected - o.Rejected, c.Refused - o.Refused,
		c.Delivered - o.Delivered, c.Deferred - o.Deferred, c.Bounced - o.Bounced}
}

// Status returns the server's status now.
func (m *Metrics) Status() Status {
	now := time.Now()
	st := Status{Started: m.started, Uptime: now.Sub(m.started).Seconds()}
	if m.src.Ingress != nil {
		st.Sessions = m.src.Ingress().Sessions
	}
	if m.src.Queue != nil {
		st.Groups = groupTotals(m.src.Queue())
	}
	cur := m.sample()
	then := m.rates.at(now.Add(-rateWindow))
	st.Window = now.Sub(then.t).Seconds()
	st.Rates = cur.minus(then.c)
	return st
}

// sample reads the running totals.
func (m *Metrics) sample() Counts {
	var c Counts
	if m.src.Ingress != nil {
		st := m.src.Ingress()
		c.Accepted = st.Accepted
		for _, n := range st.Rejected {
			c.Rejected += n
		}
		for _, n := range st.Refused {
			c.Refused += n
		}
	}
	rs := m.recipients()
	c.Delivered = int64(total(rs, "delivered"))
	c.Deferred = int64(total(rs, "deferred"))
	c.Bounced = int64(total(rs, "bounced"))
	return c
}

const (
	rateWindow = time.Minute
	rateStep   = 5 * time.Second
)

// rates keeps a sample of the totals every rateStep for a little over
// rateWindow, so a status can subtract the totals of a minute ago.
type rates struct {
	read func() Counts

	mu      sync.Mutex
	samples []timedCounts // oldest first; the first is the start
}

type timedCounts struct {
	t time.Time
	c Counts
}

func newRates(read func() Counts) *rates {
	return &rates{read: read, samples: []timedCounts{{t: time.Now()}}}
}

func (r *rates) run(ctx context.Context) {
	t := time.NewTicker(rateStep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.add(now, r.read())
		}
	}
}

func (r *rates) add(now time.Time, c Counts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, timedCounts{now, c})
	// Keep one sample older than the window, so at() always has one.
	for len(r.samples) > 2 && r.samples[1].t.Before(now.Add(-rateWindow-rateStep)) {
		r.samples = r.samples[1:]
	}
}

// at returns the oldest sample taken at or after t, or the newest one
// if all are older; the first sample is the start, with zero counts.
func (r *rates) at(t time.Time) timedCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.samples {
		if !s.t.Before(t) {
			return s
		}
	}
	return r.samples[len(r.samples)-1]
}
