package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// The emulated Internet (--world internet): domains of a few kinds, each
// with its own sink and its own receiver behaviour, drawn from a seed.

// class is a domain's part in the emulated Internet.
type class int

const (
	classGiant     class = iota // the largest domains; throttle like the big providers
	classTail                   // everyone else that answers normally
	classGreylist               // greylists each (sender, recipient) on first sight
	classTarpit                 // holds the greeting (and, if set, each reply)
	classBlackhole              // MX never answers a SYN: nothing deliverable
	numClasses
)

func (c class) String() string {
	return [...]string{"giant", "tail", "greylist", "tarpit", "blackhole"}[c]
}

// internetOptions are the world's properties, each a flag.
type internetOptions struct {
	seed          uint64
	giants        []float64     // member shares of the largest domains, largest first
	zipf          float64       // exponent of the Zipf law the other domains' shares follow by rank
	rtt           durRange      // round trip of non-giant domains, log-uniform
	giantRTT      durRange      // round trip of the giants, uniform
	greylist      float64       // share of domains that greylist
	greyDelay     time.Duration // how long a (sender, recipient) stays greylisted
	tarpit        float64       // share of domains that are tarpits
	tarpitBanner  durRange      // tarpit greeting delay, uniform
	tarpitReply   time.Duration // extra delay on every tarpit reply
	blackhole     float64       // share of domains whose MX never answers
	throttleConns int           // giants: sessions per client address (0: no cap)
	throttleMsgs  int           // giants: messages per connection (0: no cap)
	conns         int           // other domains: sessions per client address (0: no cap)
	maxRcpts      int           // every domain: recipients per transaction (0: no cap)
}

func defaultInternet() internetOptions {
	return internetOptions{
		seed:          1,
		giants:        []float64{0.30, 0.10, 0.05},
		zipf:          1,
		rtt:           durRange{5 * time.Millisecond, 200 * time.Millisecond},
		giantRTT:      durRange{20 * time.Millisecond, 40 * time.Millisecond},
		greylist:      0.10,
		greyDelay:     30 * time.Second,
		tarpit:        0.01,
		tarpitBanner:  durRange{30 * time.Second, 60 * time.Second},
		blackhole:     0.01,
		throttleConns: 10,
		throttleMsgs:  20,
		conns:         50,
		maxRcpts:      100,
	}
}

// defaultUnknown is the share of 550 5.1.1 recipients in the Internet
// world when --perm-fail is not given.
const defaultUnknown = 0.02

// profile is one domain's receiver behaviour.
type profile struct {
	class    class
	rtt      time.Duration // per exchange, and before the greeting
	greet    time.Duration // more before the greeting (tarpit)
	reply    time.Duration // more on every exchange after it (tarpit)
	maxConns int           // sessions per client address; 0: no cap
	maxMsgs  int           // messages per connection; 0: no cap
	maxRcpts int           // recipients per transaction; 0: no cap
	greylist time.Duration // greylisting window; 0: none
}

func (wo *internetOptions) validate(domains int) error {
	sum := 0.0
	for i, g := range wo.giants {
		if g <= 0 || g >= 1 || (i > 0 && g > wo.giants[i-1]) {
			return fmt.Errorf("--giants %v: want shares in (0,1), largest first", wo.giants)
		}
		sum += g
	}
	special := int(math.Round(wo.greylist*float64(domains))) + int(math.Round(wo.tarpit*float64(domains))) +
		int(math.Round(wo.blackhole*float64(domains)))
	switch {
	case sum >= 1 || len(wo.giants) >= domains:
		return fmt.Errorf("--giants %v: their shares must add up to less than 1 and leave domains for the tail (--domains %d)", wo.giants, domains)
	case wo.zipf < 0 || wo.zipf > 5:
		return fmt.Errorf("--zipf %v: want an exponent from 0 (even) to 5", wo.zipf)
	case wo.greylist < 0 || wo.tarpit < 0 || wo.blackhole < 0 || special > domains-len(wo.giants):
		return fmt.Errorf("--greylist, --tarpit and --blackhole are shares of --domains %d; together at most the %d non-giant domains", domains, domains-len(wo.giants))
	case wo.rtt.lo <= 0 || wo.giantRTT.lo < 0 || wo.tarpitBanner.lo < 0:
		return fmt.Errorf("--rtt-range must be positive, --giant-rtt and --tarpit-banner not negative")
	case wo.greyDelay < 0 || wo.tarpitReply < 0:
		return fmt.Errorf("--greylist-delay and --tarpit-reply must not be negative")
	case wo.throttleConns < 0 || wo.throttleMsgs < 0 || wo.conns < 0 || wo.maxRcpts < 0:
		return fmt.Errorf("--throttle-conns, --throttle-msgs, --conns and --max-rcpts must not be negative (0: no cap)")
	}
	return nil
}

// internetSpread returns how many of n members each of d domains gets:
// the giants their shares, the others the rest by Zipf's law over their
// rank, continuing after the giants' ranks (rank k gets 1/k^s), so the
// tail falls off from the smallest giant to a handful of members.
func internetSpread(n, d int, giants []float64, s float64) []int {
	w := make([]float64, d)
	rest := 1.0
	for i, g := range giants {
		w[i] = g
		rest -= g
	}
	tail := 0.0
	for k := len(giants); k < d; k++ {
		tail += math.Pow(float64(k+1), -s)
	}
	for k := len(giants); k < d; k++ {
		w[k] = rest * math.Pow(float64(k+1), -s) / tail
	}
	// Rounding the cumulative share keeps the sum exactly n.
	counts := make([]int, d)
	cum := 0.0
	for i := range counts {
		next := cum + w[i]
		counts[i] = int(math.Round(float64(n)*next)) - int(math.Round(float64(n)*cum))
		cum = next
	}
	counts[d-1] += n - int(math.Round(float64(n)*cum)) // float error in the last share
	return counts
}

// internetProfiles draws each of d domains' class and behaviour from the
// seed: the first len(giants) are the giants; among the others, chosen at
// random, black holes, tarpits and greylisting domains in their shares;
// the rest are the tail.
func internetProfiles(d int, wo *internetOptions) []profile {
	r := rand.New(rand.NewPCG(wo.seed, 0x6661_6e6d_6169_6c))
	ps := make([]profile, d)
	g := len(wo.giants)
	for i := range ps {
		ps[i] = profile{class: classTail, maxConns: wo.conns, maxRcpts: wo.maxRcpts}
	}
	for i := range g {
		ps[i] = profile{class: classGiant, rtt: wo.giantRTT.uniform(r),
			maxConns: wo.throttleConns, maxMsgs: wo.throttleMsgs, maxRcpts: wo.maxRcpts}
	}
	share := func(f float64) int { return int(math.Round(f * float64(d))) }
	order := r.Perm(d - g)
	next := 0
	take := func(n int, c class) {
		for _, k := range order[next : next+n] {
			ps[g+k].class = c
		}
		next += n
	}
	take(share(wo.blackhole), classBlackhole)
	take(share(wo.tarpit), classTarpit)
	take(share(wo.greylist), classGreylist)
	for i := g; i < d; i++ {
		p := &ps[i]
		p.rtt = wo.rtt.logUniform(r)
		switch p.class {
		case classTarpit:
			p.greet, p.reply = wo.tarpitBanner.uniform(r), wo.tarpitReply
		case classGreylist:
			p.greylist = wo.greyDelay
		}
	}
	return ps
}

// pickUnknown chooses exactly round(share·len(addrs)) of addrs, from the
// seed, to be answered 550 5.1.1.
func pickUnknown(addrs []string, share float64, seed uint64) map[string]bool {
	n := int(math.Round(share * float64(len(addrs))))
	r := rand.New(rand.NewPCG(seed, 0x756e_6b6e_6f77_6e))
	out := make(map[string]bool, n)
	for _, i := range r.Perm(len(addrs))[:n] {
		out[addrs[i]] = true
	}
	return out
}

// durRange is a flag value "LO..HI" (or one duration for both).
type durRange struct{ lo, hi time.Duration }

func (d *durRange) String() string {
	if d.lo == d.hi {
		return d.lo.String()
	}
	return d.lo.String() + ".." + d.hi.String()
}

func (d *durRange) Set(s string) error {
	lo, hi, ok := strings.Cut(s, "..")
	if !ok {
		hi = lo
	}
	a, err := time.ParseDuration(lo)
	if err != nil {
		return fmt.Errorf("%q: want a duration or LO..HI, e.g. 5ms..200ms", s)
	}
	b, err := time.ParseDuration(hi)
	if err != nil || b < a {
		return fmt.Errorf("%q: want a duration or LO..HI with LO <= HI, e.g. 5ms..200ms", s)
	}
	d.lo, d.hi = a, b
	return nil
}

func (d durRange) uniform(r *rand.Rand) time.Duration {
	return (d.lo + time.Duration(r.Float64()*float64(d.hi-d.lo))).Round(time.Microsecond)
}

// logUniform draws with a uniform logarithm: as many domains between 5
// and 20 ms as between 50 and 200 ms.
func (d durRange) logUniform(r *rand.Rand) time.Duration {
	lo, hi := math.Log(float64(d.lo)), math.Log(float64(d.hi))
	return time.Duration(math.Exp(lo + r.Float64()*(hi-lo))).Round(time.Microsecond)
}

// floatList is a flag value "0.3,0.1,0.05".
type floatList []float64

func (f *floatList) String() string {
	parts := make([]string, len(*f))
	for i, v := range *f {
		parts[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

func (f *floatList) Set(s string) error {
	var out []float64
	if s != "" {
		for _, p := range strings.Split(s, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil {
				return fmt.Errorf("%q: want shares such as 0.30,0.10,0.05", s)
			}
			out = append(out, v)
		}
	}
	*f = out
	return nil
}
