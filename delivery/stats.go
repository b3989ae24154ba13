package delivery

import "sync/atomic"

// Stats counts what the agent's caches saved since it started: DNS
// answers served from the resolver's cache rather than asked for, and
// SMTP sessions taken from the connection cache rather than dialled.
type Stats struct {
	DNSCacheHits   int64 // lookups answered from the cache
	DNSCacheMisses int64 // lookups that needed a query (or joined one in flight)
	ConnsOpened    int64 // SMTP connections dialled and greeted
	ConnsReused    int64 // transactions sent on a cached connection
}

// counters are the agent's live counts behind Stats.
type counters struct {
	connsOpened atomic.Int64
	connsReused atomic.Int64
}

// Stats returns the agent's counters.
func (a *Agent) Stats() Stats {
	hits, misses := a.res.CacheStats()
	return Stats{DNSCacheHits: hits, DNSCacheMisses: misses,
		ConnsOpened: a.counters.connsOpened.Load(), ConnsReused: a.counters.connsReused.Load()}
}

// CacheStats returns the lookups answered from the cache and those that
// were not.
func (r *Resolver) CacheStats() (hits, misses int64) {
	return r.hits.Load(), r.misses.Load()
}
