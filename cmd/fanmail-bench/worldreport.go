package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WorldReport is the Internet world's part of the report: how long the
// deliverable recipients took, overall and per class of domain, beside
// the best the world's limits allow, and what each destination saw.
type WorldReport struct {
	Seed     uint64        `json:"seed"`
	Settings WorldSettings `json:"settings"`
	// Times run from the first post's 250 (for fanout, the post's).
	Classes      []ClassReport `json:"classes"` // "all" first
	Destinations []DestReport  `json:"destinations"`

	OverConnCap   int `json:"destinations_over_conn_cap"` // destinations where the target opened more than allowed
	Refused421    int `json:"refused_421_at_greeting"`
	Throttled421  int `json:"throttled_421_past_msgs_per_conn"`
	Greylisted451 int `json:"greylisted_451"`
	TooMany452    int `json:"too_many_rcpts_452"`
	Unknown       int `json:"unknown_recipients"` // addresses answered 550 5.1.1
}

// WorldSettings are the world's properties, as drawn from.
type WorldSettings struct {
	Giants         []float64  `json:"giants"`
	Zipf           float64    `json:"zipf"`
	RTTms          [2]float64 `json:"rtt_range_ms"`
	GiantRTTms     [2]float64 `json:"giant_rtt_ms"`
	Greylist       float64    `json:"greylist_share"`
	GreylistDelayS float64    `json:"greylist_delay_s"`
	Tarpit         float64    `json:"tarpit_share"`
	TarpitBannerS  [2]float64 `json:"tarpit_banner_s"`
	TarpitReplyMs  float64    `json:"tarpit_reply_ms"`
	Blackhole      float64    `json:"blackhole_share"`
	ThrottleConns  int        `json:"throttle_conns"`
	ThrottleMsgs   int        `json:"throttle_msgs"`
	Conns          int        `json:"conns"`
	MaxRcpts       int        `json:"max_rcpts"`
	Unknown        float64    `json:"unknown_share"`
}

// ClassReport is one class of domain, or "all".
type ClassReport struct {
	Class       string `json:"class"`
	Domains     int    `json:"domains"`
	Members     int    `json:"members"`     // addresses at those domains
	Deliverable int    `json:"deliverable"` // expected (post, recipient) pairs
	Delivered   int    `json:"delivered"`
	// Seconds until 50, 90, 99 and 100% of Deliverable had arrived
	// (null: not reached), the lower bound the world's limits imply, and
	// the first over the second.
	Seconds    Percentiles `json:"seconds"`
	LowerBound Percentiles `json:"lower_bound_seconds"`
	Ratio      Percentiles `json:"ratio"`
	// Timeline is how many had arrived by the end of each second from
	// the first post's 250 (element i: by i+1 s), up to the last arrival
	// and at most timelineSeconds long: where a class lost its time.
	Timeline []int `json:"delivered_by_second,omitempty"`
}

// timelineSeconds bounds a class's timeline (an hour of seconds).
const timelineSeconds = 3600

// timeline counts sorted arrival times by the end of each second.
func timeline(sorted []time.Duration) []int {
	if len(sorted) == 0 {
		return nil
	}
	n := min(int(sorted[len(sorted)-1]/time.Second)+1, timelineSeconds)
	out := make([]int, n)
	k := 0
	for i := range out {
		end := time.Duration(i+1) * time.Second
		for k < len(sorted) && sorted[k] < end {
			k++
		}
		out[i] = k
	}
	return out
}

// Percentiles holds one figure per reportPercentiles entry.
type Percentiles struct {
	P50  *float64 `json:"p50"`
	P90  *float64 `json:"p90"`
	P99  *float64 `json:"p99"`
	P100 *float64 `json:"p100"`
}

func (p Percentiles) all() []*float64 { return []*float64{p.P50, p.P90, p.P99, p.P100} }

func percentilesOf(v []*float64) Percentiles { return Percentiles{v[0], v[1], v[2], v[3]} }

// DestReport is what one destination's sink saw.
type DestReport struct {
	Domain      string  `json:"domain"`
	Class       string  `json:"class"`
	Members     int     `json:"members"`
	Deliverable int     `json:"deliverable"`
	Delivered   int     `json:"delivered"`
	RTTms       float64 `json:"rtt_ms"`
	GreetingS   float64 `json:"greeting_delay_s,omitempty"`
	// ConnsAllowed is the cap per client address (0: none); MaxConnsSeen
	// the most connections the target had open at once, counting those
	// refused at the greeting, so more than allowed shows it tried.
	ConnsAllowed  int `json:"conns_allowed"`
	MaxConnsSeen  int `json:"max_conns_seen"`
	MaxSessions   int `json:"max_sessions"`
	MsgsAllowed   int `json:"msgs_per_conn_allowed"`
	Connections   int `json:"connections"`
	Transactions  int `json:"transactions"`
	Refused421    int `json:"refused_421"`
	Throttled421  int `json:"throttled_421"`
	Greylisted451 int `json:"greylisted_451"`
	TooMany452    int `json:"too_many_rcpts_452"`
	RcptsRejected int `json:"rcpts_rejected"` // every RCPT refusal, those above and 550s
	// FirstS and LastS are the first and last arrival there, seconds
	// from the first post's 250 (0 when none arrived).
	FirstS float64 `json:"first_arrival_s,omitempty"`
	LastS  float64 `json:"last_arrival_s,omitempty"`
}

// worldReport measures the run against the Internet world it ran in.
func worldReport(o *options, p *plan, col *collector, w *world) *WorldReport {
	n := &o.net
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	wr := &WorldReport{Seed: n.seed, Unknown: len(p.unknown), Settings: WorldSettings{
		Giants: n.giants, Zipf: n.zipf,
		RTTms: [2]float64{ms(n.rtt.lo), ms(n.rtt.hi)}, GiantRTTms: [2]float64{ms(n.giantRTT.lo), ms(n.giantRTT.hi)},
		Greylist: n.greylist, GreylistDelayS: n.greyDelay.Seconds(),
		Tarpit: n.tarpit, TarpitBannerS: [2]float64{n.tarpitBanner.lo.Seconds(), n.tarpitBanner.hi.Seconds()},
		TarpitReplyMs: ms(n.tarpitReply), Blackhole: n.blackhole,
		ThrottleConns: n.throttleConns, ThrottleMsgs: n.throttleMsgs, Conns: n.conns, MaxRcpts: n.maxRcpts,
		Unknown: o.permFail,
	}}
	idx := make(map[string]int, len(p.domains))
	kinds := make(map[string]domainKind, len(p.domains))
	for i, d := range p.domains {
		idx[d.name], kinds[d.name] = i, d.kind
	}
	dests := make([]DestReport, len(p.domains))
	perPost := make([][]int, len(p.domains))
	for _, l := range p.lists {
		for _, a := range l.members {
			dests[idx[domainOf(a)]].Members++
		}
	}
	for _, ps := range p.posts {
		count := map[int]int{}
		for _, r := range ps.expect {
			if p.expected(r, kinds, o) {
				count[idx[domainOf(r)]]++
			}
		}
		for di, c := range count {
			perPost[di] = append(perPost[di], c)
			dests[di].Deliverable += c
		}
	}

	// Measured times and lower bounds, by class; index numClasses is "all".
	got := make([][]time.Duration, numClasses+1)
	best := make([][]time.Duration, numClasses+1)
	if t0, ok := col.firstAccept(); ok {
		col.mu.Lock()
		for _, a := range col.arrivals {
			di := idx[domainOf(a.rcpt)]
			t := max(0, a.at.Sub(t0))
			dr := &dests[di]
			if dr.Delivered++; dr.Delivered == 1 || t.Seconds() < dr.FirstS {
				dr.FirstS = t.Seconds()
			}
			dr.LastS = max(dr.LastS, t.Seconds())
			c := p.domains[di].prof.class
			got[c], got[numClasses] = append(got[c], t), append(got[numClasses], t)
		}
		col.mu.Unlock()
	}
	for di, d := range p.domains {
		before := len(best[numClasses])
		best[numClasses] = idealArrivals(best[numClasses], d.prof, perPost[di])
		best[d.prof.class] = append(best[d.prof.class], best[numClasses][before:]...)
	}
	classes := make([]ClassReport, numClasses+1)
	for c := range numClasses + 1 {
		cr := &classes[c]
		cr.Class = "all"
		if c < numClasses {
			cr.Class = class(c).String()
		}
		slices.Sort(got[c])
		slices.Sort(best[c])
		cr.Delivered, cr.Deliverable = len(got[c]), len(best[c])
		cr.Timeline = timeline(got[c])
		at, ok := reachedAt(got[c], cr.Deliverable, reportPercentiles)
		lb, lbOK := reachedAt(best[c], cr.Deliverable, reportPercentiles)
		var secs, bound, ratio []*float64
		for i := range reportPercentiles {
			secs, bound, ratio = append(secs, nil), append(bound, nil), append(ratio, nil)
			if lbOK[i] {
				bound[i] = ptr(lb[i].Seconds())
			}
			if ok[i] {
				secs[i] = ptr(at[i].Seconds())
				if lbOK[i] && lb[i] > 0 {
					ratio[i] = ptr(at[i].Seconds() / lb[i].Seconds())
				}
			}
		}
		cr.Seconds, cr.LowerBound, cr.Ratio = percentilesOf(secs), percentilesOf(bound), percentilesOf(ratio)
	}
	for di, d := range p.domains {
		dr := &dests[di]
		pr := d.prof
		dr.Domain, dr.Class, dr.RTTms, dr.GreetingS = d.name, pr.class.String(), ms(pr.rtt), pr.greet.Seconds()
		dr.ConnsAllowed, dr.MsgsAllowed = pr.maxConns, pr.maxMsgs
		for _, c := range []int{int(pr.class), int(numClasses)} {
			classes[c].Domains++
			classes[c].Members += dr.Members
		}
		if d.sink < 0 {
			continue
		}
		st := w.sinks[d.sink].Stats()
		dr.MaxConnsSeen, dr.MaxSessions, dr.Connections, dr.Transactions = st.MaxOpenConns, st.MaxConcurrentConns, st.Connections, st.Transactions
		dr.Refused421, dr.Throttled421, dr.Greylisted451, dr.TooMany452, dr.RcptsRejected = st.Rejected, st.Throttled, st.Greylisted, st.TooManyRcpts, st.RcptRejected
		if pr.maxConns > 0 && dr.MaxConnsSeen > pr.maxConns {
			wr.OverConnCap++
		}
		wr.Refused421 += st.Rejected
		wr.Throttled421 += st.Throttled
		wr.Greylisted451 += st.Greylisted
		wr.TooMany452 += st.TooManyRcpts
	}
	// "all" first, then the classes in their order.
	wr.Classes = append([]ClassReport{classes[numClasses]}, classes[:numClasses]...)
	wr.Destinations = dests
	return wr
}

func ptr(f float64) *float64 { return &f }

// writeTable prints the world's figures after the run's.
func (wr *WorldReport) writeTable(w io.Writer) error {
	s := wr.Settings
	byClass := map[string]ClassReport{}
	for _, c := range wr.Classes {
		byClass[c.Class] = c
	}
	fmt.Fprintf(w, "\nworld: internet, seed %d: %d domains: %d giants (%s of members; %d conns per address, %d messages per connection), %d tail, %d greylisting (%s), %d tarpits (greeting %s..%s), %d black holes; RTT %s..%s ms, giants %s..%s ms; %d recipients per transaction; %d unknown users (550 5.1.1)\n",
		wr.Seed, byClass["all"].Domains, byClass["giant"].Domains, floatsString(s.Giants), s.ThrottleConns, s.ThrottleMsgs,
		byClass["tail"].Domains, byClass["greylist"].Domains, time.Duration(s.GreylistDelayS*float64(time.Second)),
		byClass["tarpit"].Domains, secs(s.TarpitBannerS[0]), secs(s.TarpitBannerS[1]), byClass["blackhole"].Domains,
		num(s.RTTms[0]), num(s.RTTms[1]), num(s.GiantRTTms[0]), num(s.GiantRTTms[1]), s.MaxRcpts, wr.Unknown)
	fmt.Fprintln(w, "time until each share of the deliverable recipients arrived, from the first post's 250: measured / lower bound = ratio")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "class\tdomains\tdeliverable\tdelivered\t50%\t90%\t99%\t100%")
	for _, c := range wr.Classes {
		if c.Deliverable == 0 && c.Class != "all" {
			fmt.Fprintf(tw, "%s\t%d\t0\t%d\t-\t-\t-\t-\n", c.Class, c.Domains, c.Delivered)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d", c.Class, c.Domains, c.Deliverable, c.Delivered)
		got, lb, ratio := c.Seconds.all(), c.LowerBound.all(), c.Ratio.all()
		for i := range got {
			cell := "not reached"
			if got[i] != nil {
				cell = secs(*got[i])
			}
			if lb[i] != nil {
				cell += " / " + secs(*lb[i])
			}
			if ratio[i] != nil {
				cell += fmt.Sprintf(" = %.1f×", *ratio[i])
			}
			fmt.Fprintf(tw, "\t%s", cell)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "replies handed out: %d × 421 at the greeting (too many connections), %d × 421 past the messages per connection, %d × 451 greylisting, %d × 452 too many recipients; %d destinations saw more connections at once than they allow\n",
		wr.Refused421, wr.Throttled421, wr.Greylisted451, wr.TooMany452, wr.OverConnCap)
	// The giants, and the other destinations the target pushed past a cap.
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "destination\tclass\tdelivered\tmax conns seen / allowed\tconnections\t421 greeting\t421 messages\t451 greylist")
	shown := 0
	for _, d := range wr.Destinations {
		over := d.ConnsAllowed > 0 && d.MaxConnsSeen > d.ConnsAllowed
		if d.Class != "giant" && !over && d.Throttled421 == 0 {
			continue
		}
		if shown++; shown > 20 {
			fmt.Fprintln(tw, "…\t(more in --json)")
			break
		}
		allowed := "no cap"
		if d.ConnsAllowed > 0 {
			allowed = fmt.Sprint(d.ConnsAllowed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d / %s\t%d\t%d\t%d\t%d\n", d.Domain, d.Class, d.Delivered, d.Deliverable,
			d.MaxConnsSeen, allowed, d.Connections, d.Refused421, d.Throttled421, d.Greylisted451)
	}
	return tw.Flush()
}

func secs(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.2fs", s)
	}
	return fmt.Sprintf("%.1fs", s)
}

func num(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", f), "0"), ".")
}

func floatsString(fs []float64) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%g%%", f*100)
	}
	return strings.Join(parts, " + ")
}
