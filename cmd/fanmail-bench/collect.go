package main

import (
	"slices"
	"sync"
	"time"

	"fanmail/internal/fakenet"
)

type pair struct{ key, rcpt string }

// arrival is the first delivery of one expected (message, recipient).
type arrival struct {
	key, rcpt string
	at        time.Time
}

// collector ties what the sinks receive to what was injected: it counts
// each expected (Message-ID, recipient) pair once, duplicates beyond that
// across all sinks, bounces (null-sender reports the target sent, such as
// DSNs for the null-MX domain's members) and strays (other mail the run
// never sent or expected).
type collector struct {
	mu       sync.Mutex
	want     map[pair]bool // expected pairs; true once delivered
	expected int
	got      int
	dups     int
	stray    int
	bounces  int
	arrivals []arrival
	accepted map[string]time.Time // Message-ID → when the target said 250
	last     time.Time
	done     chan struct{} // closed when every expected pair arrived
}

func newCollector() *collector {
	return &collector{want: make(map[pair]bool), accepted: make(map[string]time.Time), done: make(chan struct{})}
}

func (c *collector) expect(key, rcpt string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.want[pair{key, rcpt}]; !ok {
		c.want[pair{key, rcpt}] = false
		c.expected++
	}
}

// forget drops the expectations of a post the target never accepted, so
// the run can complete without it.
func (c *collector) forget(key string, rcpts []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rcpts {
		if seen, ok := c.want[pair{key, r}]; ok && !seen {
			delete(c.want, pair{key, r})
			c.expected--
		}
	}
	if c.got == c.expected {
		select {
		case <-c.done:
		default:
			close(c.done)
		}
	}
}

// accept records when the target acknowledged a post.
func (c *collector) accept(key string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.accepted[key] = at
}

// record is the sinks' OnRecord callback.
func (c *collector) record(d fakenet.Delivery, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.From == "" {
		c.bounces++
		return
	}
	for _, r := range d.Recipients {
		seen, ok := c.want[pair{d.Key, r}]
		switch {
		case !ok:
			c.stray++
		case seen:
			c.dups++
		default:
			c.want[pair{d.Key, r}] = true
			c.got++
			c.arrivals = append(c.arrivals, arrival{d.Key, r, at})
			c.last = at
			if c.got == c.expected {
				select {
				case <-c.done:
				default:
					close(c.done)
				}
			}
		}
	}
}

// progress returns the delivered and expected counts.
func (c *collector) progress() (got, expected int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got, c.expected
}

// latencies are each arrival's delay after its post's 250, sorted. A copy
// can reach a sink before the client has read the 250; that counts as 0.
func (c *collector) latencies() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Duration, 0, len(c.arrivals))
	for _, a := range c.arrivals {
		if acc, ok := c.accepted[a.key]; ok {
			out = append(out, max(0, a.at.Sub(acc)))
		}
	}
	slices.Sort(out)
	return out
}

// firstAccept is when the target said 250 to its first post; false if
// it accepted none.
func (c *collector) firstAccept() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first time.Time
	for _, at := range c.accepted {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first, !first.IsZero()
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
