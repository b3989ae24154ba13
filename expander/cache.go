package expander

// maxUnknownCached bounds the addresses remembered as naming nothing,
// per generation (two are kept): about 100 bytes each, so at most a few
// MB however many addresses clients try. A hit saves one or two SQLite
// lookups (13-30µs, BENCHMARKS.md), which matters for aliases whose
// :include: targets are checked against the lists on every post, not for
// RCPT floods, which the session limits in ingress cut short.
const maxUnknownCached = 16384

// unknownCache is a set of strings bounded by two generations: adds go
// to the current one; when it is full it becomes the previous one and
// the one before is dropped, so recently used entries survive a turn
// and memory goes back to the collector. It is not safe for concurrent
// use; the expander's mutex guards it.
type unknownCache struct {
	limit     int
	cur, prev map[string]struct{}
}

func newUnknownCache(limit int) unknownCache {
	return unknownCache{limit: limit, cur: map[string]struct{}{}}
}

func (c *unknownCache) has(key string) bool {
	if _, ok := c.cur[key]; ok {
		return true
	}
	if _, ok := c.prev[key]; ok {
		c.add(key) // still in use: keep it past the next turn
		return true
	}
	return false
}

func (c *unknownCache) add(key string) {
	if len(c.cur) >= c.limit {
		c.prev, c.cur = c.cur, make(map[string]struct{}, c.limit/4)
	}
	c.cur[key] = struct{}{}
}

// len is the number of entries held, both generations.
func (c *unknownCache) len() int { return len(c.cur) + len(c.prev) }

// reset forgets everything: the store changed.
func (c *unknownCache) reset() {
	c.cur, c.prev = map[string]struct{}{}, nil
}
