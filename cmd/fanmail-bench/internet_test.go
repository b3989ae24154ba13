package main

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestInternetWorldShares(t *testing.T) {
	wo := defaultInternet()
	const members, domains = 100000, 2000
	counts := internetSpread(members, domains, wo.giants, wo.zipf)
	sum := 0
	for _, c := range counts {
		sum += c
	}
	if sum != members {
		t.Errorf("counts add up to %d, want %d", sum, members)
	}
	// The giants: the largest holds at least 30%, the three together 45%.
	if diff := cmp.Diff([]int{30000, 10000, 5000}, counts[:3]); diff != "" {
		t.Errorf("giants (-want +got):\n%s", diff)
	}
	// The tail follows Zipf's law with s = 1 by rank: rank k has twice
	// the members of rank 2k, falling from below the smallest giant to
	// a handful.
	for _, k := range []int{10, 50, 200} {
		if r := float64(counts[k-1]) / float64(counts[2*k-1]); math.Abs(r-2) > 0.15 {
			t.Errorf("rank %d / rank %d = %d / %d = %.2f, want about 2", k, 2*k, counts[k-1], counts[2*k-1], r)
		}
	}
	if counts[3] >= counts[2] {
		t.Errorf("tail not starting below the smallest giant: %v…", counts[:8])
	}
	for k := 4; k < domains; k++ {
		if counts[k] > counts[k-1]+1 { // rounding may lift one by one
			t.Errorf("rank %d has %d members, more than rank %d's %d", k+1, counts[k], k, counts[k-1])
		}
	}
	if last := counts[domains-1]; last < 1 || last > 10 {
		t.Errorf("smallest domain has %d members, want a handful", last)
	}

	ps := internetProfiles(domains, &wo)
	byClass := map[class]int{}
	var tailRTT []time.Duration
	for i, p := range ps {
		byClass[p.class]++
		switch {
		case i < 3:
			if p.class != classGiant || p.rtt < 20*time.Millisecond || p.rtt > 40*time.Millisecond || p.maxConns != 10 || p.maxMsgs != 20 {
				t.Errorf("giant %d: %+v, want RTT 20..40 ms, 10 conns, 20 messages", i, p)
			}
		case p.class == classGiant:
			t.Errorf("domain %d is a giant", i)
		default:
			if p.rtt < 5*time.Millisecond || p.rtt > 200*time.Millisecond || p.maxConns != 50 || p.maxMsgs != 0 {
				t.Errorf("domain %d: %+v, want RTT 5..200 ms, 50 conns, no message cap", i, p)
			}
			tailRTT = append(tailRTT, p.rtt)
		}
		if p.maxRcpts != 100 {
			t.Errorf("domain %d: %d recipients per transaction, want 100", i, p.maxRcpts)
		}
		if (p.class == classTarpit) != (p.greet >= 30*time.Second && p.greet <= 60*time.Second) ||
			(p.class == classGreylist) != (p.greylist == 30*time.Second) {
			t.Errorf("domain %d: %+v: greeting delay only for tarpits, greylisting only for its class", i, p)
		}
	}
	want := map[class]int{classGiant: 3, classBlackhole: 20, classTarpit: 20, classGreylist: 200, classTail: 1757}
	if diff := cmp.Diff(want, byClass); diff != "" {
		t.Errorf("domains per class (-want +got):\n%s", diff)
	}
	// Log-uniform over 5..200 ms: the median is near the geometric mean.
	slices.Sort(tailRTT)
	if med := tailRTT[len(tailRTT)/2]; med < 25*time.Millisecond || med > 40*time.Millisecond {
		t.Errorf("median RTT %v, want about 32 ms (log-uniform 5..200 ms)", med)
	}

	// The same seed draws the same world; another draws another.
	if diff := cmp.Diff(ps, internetProfiles(domains, &wo), cmp.AllowUnexported(profile{})); diff != "" {
		t.Errorf("same seed, different world (-first +second):\n%s", diff)
	}
	other := wo
	other.seed = 2
	if cmp.Equal(ps, internetProfiles(domains, &other), cmp.AllowUnexported(profile{})) {
		t.Error("seeds 1 and 2 drew the same world")
	}
}

func TestInternetPlan(t *testing.T) {
	o := &options{workload: "fanout", world: worldInternet, net: defaultInternet(), members: 10000, domains: 200,
		size: 1000, messages: 1, posts: 1, dnsAddr: "127.0.0.1:0", timeout: time.Minute, setFlags: map[string]bool{}}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	p1, err := makePlan(o, "a")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := makePlan(o, "b")
	if err != nil {
		t.Fatal(err)
	}
	if len(p1.unknown) != 200 || !cmp.Equal(p1.unknown, p2.unknown) {
		t.Errorf("%d unknown users (want 2%% of 10000 = 200), the same for the same seed: %v", len(p1.unknown), cmp.Equal(p1.unknown, p2.unknown))
	}
	kinds := map[string]domainKind{}
	holes := 0
	for _, d := range p1.domains {
		kinds[d.name] = d.kind
		if (d.kind == kindBlackHole) != (d.prof.class == classBlackhole) || (d.kind == kindBlackHole) != (d.sink < 0) {
			t.Errorf("domain %+v: black holes, and only they, have no sink", d)
		}
		if d.kind == kindBlackHole {
			holes++
		}
	}
	expected := 0
	for _, r := range p1.posts[0].expect {
		if p1.expected(r, kinds, o) {
			expected++
			if p1.unknown[r] || kinds[domainOf(r)] == kindBlackHole {
				t.Fatalf("%s expected", r)
			}
		}
	}
	if holes != 2 || expected >= 10000-200 || expected < 9000 {
		t.Errorf("%d black holes, %d expected recipients: want 2, and all but the unknown and black holes' members", holes, expected)
	}
}

func TestIdealArrivals(t *testing.T) {
	const ms = time.Millisecond
	rep := func(d time.Duration, n int) []time.Duration { return slices.Repeat([]time.Duration{d}, n) }
	tests := []struct {
		name    string
		p       profile
		perPost []int
		want    []time.Duration
	}{
		{
			// setup 2 RTT, each transaction 2 RTT: transactions of 100,
			// 100, 100, 100, 50 over 2 connections of at most 2 messages;
			// the fifth needs a new connection.
			name: "throttled", p: profile{rtt: 10 * ms, maxConns: 2, maxMsgs: 2, maxRcpts: 100}, perPost: []int{450},
			want: slices.Concat(rep(40*ms, 200), rep(60*ms, 200), rep((2*20+3*20)*ms, 50)),
		},
		{
			name: "no caps: one transaction on one connection", p: profile{rtt: 10 * ms}, perPost: []int{250},
			want: rep(40*ms, 250),
		},
		{
			name: "no connection cap: every transaction at once", p: profile{rtt: 10 * ms, maxRcpts: 100}, perPost: []int{250},
			want: rep(40*ms, 250),
		},
		{
			name: "greylisting adds its window", p: profile{rtt: 10 * ms, greylist: time.Second}, perPost: []int{3},
			want: rep(time.Second+40*ms, 3),
		},
		{
			// Greeting 10 ms + 30 s, then every exchange 10 + 5 ms.
			name: "tarpit", p: profile{rtt: 10 * ms, greet: 30 * time.Second, reply: 5 * ms}, perPost: []int{2},
			want: rep(30*time.Second+10*ms+15*ms+30*ms, 2),
		},
		{
			// Two posts cannot share a transaction; the fuller goes first.
			name: "two posts, one connection", p: profile{rtt: 10 * ms, maxConns: 1}, perPost: []int{1, 2},
			want: slices.Concat(rep(40*ms, 2), rep(60*ms, 1)),
		},
		{name: "nothing deliverable", p: profile{rtt: 10 * ms}, perPost: nil, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := idealArrivals(nil, tt.p, tt.perPost)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("arrivals (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReachedAt(t *testing.T) {
	var sorted []time.Duration
	for i := 1; i <= 10; i++ {
		sorted = append(sorted, time.Duration(i)*time.Second)
	}
	tests := []struct {
		name  string
		total int
		want  []time.Duration
		ok    []bool
	}{
		// Nearest rank: the ⌈p/100·n⌉-th arrival.
		{"all arrived", 10, []time.Duration{5 * time.Second, 9 * time.Second, 10 * time.Second, 10 * time.Second}, []bool{true, true, true, true}},
		{"half arrived", 20, []time.Duration{10 * time.Second, 0, 0, 0}, []bool{true, false, false, false}},
		{"none deliverable", 0, []time.Duration{0, 0, 0, 0}, []bool{false, false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := reachedAt(sorted, tt.total, reportPercentiles)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("times (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.ok, ok); diff != "" {
				t.Errorf("reached (-want +got):\n%s", diff)
			}
		})
	}
	for _, c := range []struct{ p, n, want int }{{99, 100000, 99000}, {50, 1, 1}, {90, 3, 3}, {100, 7, 7}, {99, 101, 100}} {
		if got := ceilRank(float64(c.p), c.n); got != c.want {
			t.Errorf("ceilRank(%d, %d) = %d, want %d", c.p, c.n, got, c.want)
		}
	}
}
