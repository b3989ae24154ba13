package main

import (
	"slices"
	"time"
)

// reportPercentiles are the shares of deliverable recipients whose
// arrival times the Internet world's report gives.
var reportPercentiles = []float64{50, 90, 99, 100}

// reachedAt returns, for each percentile p, when ⌈p/100·total⌉ of total
// recipients had arrived: that arrival in sorted (nearest rank), and
// false when fewer than that many arrived.
func reachedAt(sorted []time.Duration, total int, ps []float64) ([]time.Duration, []bool) {
	at, ok := make([]time.Duration, len(ps)), make([]bool, len(ps))
	for i, p := range ps {
		k := ceilRank(p, total)
		if total > 0 && k <= len(sorted) {
			at[i], ok[i] = sorted[k-1], true
		}
	}
	return at, ok
}

// ceilRank is ⌈p/100·n⌉, at least 1, computed in integers so 100% is
// exactly n.
func ceilRank(p float64, n int) int {
	k := (int(p*1000)*n + 100*1000 - 1) / (100 * 1000)
	return max(k, 1)
}

// The best possible delivery into one domain, given only the world's
// limits: a client that knows every limit and loses no time of its own.
// The sinks charge one round trip before the greeting (the handshake)
// and one per exchange, a pipelined batch being one exchange (RFC 2920),
// so with pipelining
//
//	setup = (rtt + greet) + (rtt + reply)     greeting, then EHLO
//	txn   = 2·(rtt + reply)                   MAIL…RCPT…DATA, then the body
//
// A domain's recipients go in transactions of at most maxRcpts, largest
// first, dealt round-robin over maxConns connections at once (one each
// when there is no cap); the q-th transaction (from 0) of a connection
// slot arrives at
//
//	greylist + (⌊q/maxMsgs⌋ + 1)·setup + (q + 1)·txn
//
// since after maxMsgs messages the slot needs a new connection. A
// greylisting domain delays everything by its window: a recipient is
// only taken one window after its first attempt, which costs at least
// the time the first transaction would have.
func (p profile) setup() time.Duration { return p.rtt + p.greet + p.rtt + p.reply }
func (p profile) txn() time.Duration   { return 2 * (p.rtt + p.reply) }

// idealArrivals appends, for each of a domain's deliverable recipients,
// the earliest time it can arrive after the posts were accepted; perPost
// holds how many deliverable recipients each post has there (a post's
// recipients share transactions, different posts cannot).
func idealArrivals(out []time.Duration, p profile, perPost []int) []time.Duration {
	var sizes []int
	for _, n := range perPost {
		for n > 0 {
			k := n
			if p.maxRcpts > 0 {
				k = min(k, p.maxRcpts)
			}
			sizes = append(sizes, k)
			n -= k
		}
	}
	// Fullest transactions first: that maximises the count delivered by
	// every moment at once, so each percentile of the result is a bound.
	slices.SortFunc(sizes, func(a, b int) int { return b - a })
	slots := len(sizes)
	if p.maxConns > 0 {
		slots = min(slots, p.maxConns)
	}
	for j, size := range sizes {
		q := j / slots
		conns := 1
		if p.maxMsgs > 0 {
			conns = q/p.maxMsgs + 1
		}
		at := p.greylist + time.Duration(conns)*p.setup() + time.Duration(q+1)*p.txn()
		for range size {
			out = append(out, at)
		}
	}
	return out
}
