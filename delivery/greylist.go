package delivery

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"fanmail/envelope"
)

// Greylisting (RFC 6647): a receiver answers the first attempt of each
// (client address, sender, recipient) with a temporary failure and takes
// a retry once its window has passed. Windows in use run from 30 seconds
// to 30 minutes (postgrey's and rspamd's default is 5 minutes,
// milter-greylist's 30). The queue's backoff is built for failures of
// unknown cause (5 minutes, then doubling), which makes a 30-second
// greylister cost 5 minutes; RFC 5321 §4.5.4.1 itself asks for "more
// sophisticated and variable strategies ... when the SMTP client can
// determine the reason for non-delivery". So delivery recognises
// greylisting and chooses the retry itself, counted from the moment the
// recipient was first greylisted (when the receiver's window started):
//
//   - a wait the reply names ("try again in 300 seconds"), plus a second;
//   - else, once the MX group has let a greylisted recipient through,
//     the offset at which it did (its window is at most that);
//   - else GreylistRetry (40s: just past the shortest windows in common
//     use), doubling (80s, 160s, 320s, ...) past any offset at which the
//     group has already refused a retry, so a 5-minute greylister costs
//     at most 5m20s and three extra connections, and a 30-second one
//     40 seconds;
//
// until GreylistRetryMax (30m), after which the queue's backoff takes
// over. A retry costs the receiver one connection per envelope (all of a
// domain's recipients in a post share a few), which is the load Postfix's
// 5-minute queue runs put on it anyway.
//
// A reply is greylisting when it is a 4xx whose text says so (grey- or
// gray-list), or a 450/451 with RFC 3463 status 4.7.1 to a recipient's
// first attempt or to one greylisted before: after a first attempt, a
// 4.7.1 is more often a rate limit or a policy.

// maxGreyEntries bounds the recipients remembered as greylisted; one
// that falls out is treated as first greylisted when next refused.
const maxGreyEntries = 200_000

// greylist remembers when recipients were first greylisted, and what each
// MX group's window has been seen to be. Its memory is bounded by
// maxGreyEntries recipients and forgets entries older than the retry
// schedule.
type greylist struct {
	mu    sync.Mutex
	first map[greyKey]time.Time
	fifo  []greyStamp // insertion order, for the bound and expiry
	head  int
	dests map[string]*greyDest
}

type greyKey struct{ dest, sender, rcpt string }

type greyStamp struct {
	k  greyKey
	t0 time.Time
}

// greyDest is what one MX group's greylisting has shown: a retry lo after
// the first greylisting was refused, one hi after it was accepted (0 when
// unseen); so its window lies in (lo, hi].
type greyDest struct {
	lo, hi  time.Duration
	entries int // its recipients in greylist.first
}

func newGreylist() *greylist {
	return &greylist{first: map[greyKey]time.Time{}, dests: map[string]*greyDest{}}
}

// greylisted reports whether reply r to a recipient is greylisting; known
// says the recipient was greylisted before, first that this is its first
// attempt.
func greylisted(r envelope.Reply, first, known bool) bool {
	if r.Code/100 != 4 {
		return false
	}
	t := strings.ToLower(r.Text)
	for _, w := range []string{"greylist", "graylist", "grey-list", "gray-list", "grey list", "gray list"} {
		if strings.Contains(t, w) {
			return true
		}
	}
	return (r.Code == 450 || r.Code == 451) && (known || first && r.Enhanced == "4.7.1")
}

// statedWait finds a wait named in a greylisting reply: "300 seconds",
// "5 minutes", "retry=300", "60s".
var statedWait = regexp.MustCompile(`(?i)(?:retry=|\b)(\d{1,5})\s*(seconds?|secs?|s|minutes?|mins?|m)?\b`)

func parseStatedWait(text string) time.Duration {
	for _, m := range statedWait.FindAllStringSubmatch(text, -1) {
		unit := strings.ToLower(m[2])
		if unit == "" && !strings.Contains(strings.ToLower(m[0]), "retry=") {
			continue // a bare number: an RFC 3463 status, a port, a count
		}
		n, err := strconv.Atoi(m[1])
		if err != nil || n == 0 {
			continue
		}
		d := time.Duration(n) * time.Second
		if strings.HasPrefix(unit, "m") {
			d = time.Duration(n) * time.Minute
		}
		return d
	}
	return 0
}

// deferred is told that recipient rcpt of sender, delivered through MX
// group dest, got reply r on its first attempt or a later one. If r is
// greylisting it returns how soon the recipient is worth trying again
// and true; false hands the recipient to the queue's
// backoff, as for any other deferral.
func (g *greylist) deferred(now time.Time, dest, sender, rcpt string, first bool, r envelope.Reply, cfg *Config) (time.Duration, bool) {
	k := greyKey{dest, sender, rcpt}
	g.mu.Lock()
	defer g.mu.Unlock()
	t0, known := g.first[k]
	if !greylisted(r, first, known) {
		return 0, false
	}
	gd := g.dests[dest]
	if gd == nil {
		if len(g.dests) >= maxGreyEntries {
			g.dropLearned()
		}
		gd = &greyDest{}
		g.dests[dest] = gd
	}
	if known {
		// A retry refused: the window is longer than this.
		if off := now.Sub(t0); off > gd.lo {
			gd.lo = off
			if gd.hi <= gd.lo {
				gd.hi = 0 // the group's window changed; learn it again
			}
		}
	} else {
		t0 = now
		g.add(k, now, cfg.GreylistRetryMax)
		gd.entries++
	}
	waited := now.Sub(t0)
	var at time.Duration
	switch stated := parseStatedWait(r.Text); {
	case stated > waited && stated <= cfg.GreylistRetryMax:
		at = stated + time.Second
	case gd.hi > max(waited, gd.lo):
		at = gd.hi
	default:
		at = cfg.GreylistRetry
		for at <= max(waited, gd.lo) {
			at *= 2
		}
	}
	if at > cfg.GreylistRetryMax {
		return 0, false
	}
	return max(t0.Add(at).Sub(now), time.Millisecond), true
}

// delivered is told that rcpt was accepted through dest; if it had been
// greylisted, the group's window is at most the time since.
func (g *greylist) delivered(now time.Time, dest, sender, rcpt string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gd := g.dests[dest]
	if gd == nil || gd.entries == 0 {
		return
	}
	k := greyKey{dest, sender, rcpt}
	t0, ok := g.first[k]
	if !ok {
		return
	}
	g.forget(k)
	if off := now.Sub(t0); off > gd.lo && (gd.hi == 0 || off < gd.hi) {
		gd.hi = off
	}
}

// watching reports, cheaply, whether any recipient of dest is remembered
// as greylisted, so a delivery with none can skip delivered.
func (g *greylist) watching(dest string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	gd := g.dests[dest]
	return gd != nil && gd.entries > 0
}

// add remembers k as first greylisted at t0, dropping entries past the
// schedule's end, and the oldest when the memory is full. Called with
// g.mu held.
func (g *greylist) add(k greyKey, t0 time.Time, horizon time.Duration) {
	for g.head < len(g.fifo) {
		s := g.fifo[g.head]
		if len(g.first) < maxGreyEntries && len(g.fifo)-g.head < 2*maxGreyEntries && t0.Sub(s.t0) <= horizon {
			break
		}
		if cur, ok := g.first[s.k]; ok && cur.Equal(s.t0) {
			g.forget(s.k)
		}
		g.fifo[g.head] = greyStamp{}
		g.head++
	}
	if g.head > 1024 && g.head*2 > len(g.fifo) {
		g.fifo = append(g.fifo[:0:0], g.fifo[g.head:]...)
		g.head = 0
	}
	g.first[k] = t0
	g.fifo = append(g.fifo, greyStamp{k, t0})
}

// forget drops k; a group left with no entries and nothing learned goes
// too. Called with g.mu held.
func (g *greylist) forget(k greyKey) {
	delete(g.first, k)
	if gd := g.dests[k.dest]; gd != nil {
		gd.entries--
		if gd.entries <= 0 && gd.hi == 0 && gd.lo == 0 {
			delete(g.dests, k.dest)
		}
	}
}

// dropLearned forgets what groups with no recipient remembered have
// taught, to bound the map by maxGreyEntries. Called with g.mu held.
func (g *greylist) dropLearned() {
	for key, gd := range g.dests {
		if gd.entries <= 0 {
			delete(g.dests, key)
		}
	}
}
