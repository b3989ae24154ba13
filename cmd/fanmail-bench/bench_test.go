package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// buildFanmailForTest compiles the real fanmail binary once per test.
func buildFanmailForTest(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the fanmail binary")
	}
	bin := filepath.Join(t.TempDir(), "fanmail")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fanmail")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fanmail: %v\n%s", err, out)
	}
	return bin
}

func testOptions(t *testing.T, bin, workload string) *options {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	o := &options{
		workload: workload, members: 300, domains: 12, dist: "skewed", sinkPort: port,
		size: 1500, messages: 60, clients: 4, lists: 6, posts: 2,
		dnsAddr: "127.0.0.1:0", fanmailBin: bin,
		timeout: time.Minute, settle: 200 * time.Millisecond,
		workDir: t.TempDir(), log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestRunAgainstFanmail runs each workload against the real binary and
// checks the report's counts: every expected recipient delivered once.
func TestRunAgainstFanmail(t *testing.T) {
	bin := buildFanmailForTest(t)
	spreadOf, err := spread(300, 12, "skewed")
	if err != nil {
		t.Fatal(err)
	}
	nullMembers := spreadOf[10] // special kinds fill the last domains: implicit, null MX, dead MX
	type counts struct {
		Posts, Expected, Delivered, Duplicates, Stray int
		Complete                                      bool
	}
	tests := []struct {
		workload string
		setup    func(o *options)
		want     counts
	}{
		// One domain of each special kind; the null-MX domain's members
		// are not expected.
		{"fanout", func(o *options) { o.implicitMX, o.deadMX, o.nullMX = 1, 1, 1 },
			counts{Posts: 1, Expected: 300 - nullMembers, Delivered: 300 - nullMembers, Complete: true}},
		// Signed copies with a footer and a prefix: every member still
		// gets the post once.
		{"fanout", func(o *options) {
			o.dkim, o.listSet = []string{"ed25519"}, []string{"footer=-- \nbench list", "subject_prefix=[bench]"}
		}, counts{Posts: 1, Expected: 300, Delivered: 300, Complete: true}},
		{"mass", nil, counts{Posts: 60, Expected: 60, Delivered: 60, Complete: true}},
		{"mixed", nil, counts{Posts: 12, Expected: 600, Delivered: 600, Complete: true}},
	}
	for _, tt := range tests {
		t.Run(tt.workload, func(t *testing.T) {
			o := testOptions(t, bin, tt.workload)
			if tt.setup != nil {
				tt.setup(o)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r, err := runBench(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			got := counts{r.Posts, r.Expected, r.Delivered, r.Duplicates, r.Stray, r.Complete}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("report counts (-want +got):\n%s", diff)
			}
			if r.PostsAccepted != r.Posts || r.Transactions == 0 || r.TargetPIDs != 1 || r.PeakRSSMB <= 0 {
				t.Errorf("report = %+v, want every post accepted, transactions seen, the target's memory measured", r)
			}
			if len(o.dkim) > 0 {
				log, err := os.ReadFile(filepath.Join(o.workDir, "fanmail.log"))
				if err != nil || !strings.Contains(string(log), "dkim_domains=["+listDomain+"]") {
					t.Errorf("fanmail did not sign for %s (%v):\n%s", listDomain, err, log)
				}
			}
			if r.LatencyP50ms > r.LatencyP99ms || r.LatencyP99ms > r.LatencyMaxms {
				t.Errorf("latency p50 %v > p99 %v or p99 > max %v", r.LatencyP50ms, r.LatencyP99ms, r.LatencyMaxms)
			}
		})
	}
}

func TestSpread(t *testing.T) {
	for _, dist := range []string{"uniform", "skewed"} {
		counts, err := spread(100000, 1000, dist)
		if err != nil {
			t.Fatal(err)
		}
		sum := 0
		for _, c := range counts {
			sum += c
		}
		if sum != 100000 {
			t.Errorf("%s: counts add up to %d, want 100000", dist, sum)
		}
		if dist == "skewed" && (counts[0] < 10*counts[99] || counts[0] < 13000) {
			t.Errorf("skewed: first domain %d, 100th %d: not skewed", counts[0], counts[99])
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:25": true, "127.3.4.5:2525": true,
		"10.0.0.1:25": false, "[::1]:25": false, "localhost:25": false, "127.0.0.1": false,
	} {
		if err := loopbackOnly(addr); (err == nil) != ok {
			t.Errorf("loopbackOnly(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

// TestRunInternetWorld runs fanmail into a small Internet world with
// short windows, so that everything deliverable arrives in seconds, and
// checks the world's report: every class reached, never faster than its
// lower bound, and the world's replies counted.
func TestRunInternetWorld(t *testing.T) {
	bin := buildFanmailForTest(t)
	o := testOptions(t, bin, "fanout")
	o.world, o.net, o.dist = worldInternet, defaultInternet(), ""
	o.members, o.domains = 600, 40
	o.net.greylist, o.net.greyDelay = 0.1, time.Second
	o.net.tarpit, o.net.tarpitBanner = 0.05, durRange{time.Second, 1500 * time.Millisecond}
	o.net.blackhole = 0.05
	o.net.throttleConns, o.net.throttleMsgs = 2, 2
	o.net.rtt, o.net.giantRTT = durRange{time.Millisecond, 20 * time.Millisecond}, durRange{5 * time.Millisecond, 10 * time.Millisecond}
	o.fanmailSet = []string{`queue.retry_min="1s"`, `delivery.connect_timeout="2s"`}
	o.setFlags = map[string]bool{}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := runBench(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Complete || r.Duplicates != 0 || r.World == nil {
		t.Fatalf("report: complete %v, %d of %d delivered, %d duplicates, world %v", r.Complete, r.Delivered, r.Expected, r.Duplicates, r.World != nil)
	}
	wr := r.World
	domains := map[string]int{}
	for _, c := range wr.Classes {
		domains[c.Class] = c.Domains
		if c.Class == "blackhole" {
			if c.Deliverable != 0 || c.Delivered != 0 {
				t.Errorf("black holes: %+v, want nothing deliverable", c)
			}
			continue
		}
		if c.Class == "all" && c.Deliverable != r.Expected {
			t.Errorf("all: %d deliverable, the run expected %d", c.Deliverable, r.Expected)
		}
		if c.Delivered != c.Deliverable {
			t.Errorf("%s: %d of %d delivered", c.Class, c.Delivered, c.Deliverable)
		}
		// The bound is a bound: fanmail cannot beat it (1% for clock
		// skew between the 250 the client read and the server's start).
		for i, ratio := range c.Ratio.all() {
			if ratio == nil || *ratio < 0.99 {
				t.Errorf("%s: %v%% ratio %v (measured %v, bound %v), want at least 1", c.Class, reportPercentiles[i], ratio, c.Seconds.all()[i], c.LowerBound.all()[i])
			}
		}
	}
	if diff := cmp.Diff(map[string]int{"all": 40, "giant": 3, "tail": 29, "greylist": 4, "tarpit": 2, "blackhole": 2}, domains); diff != "" {
		t.Errorf("domains per class (-want +got):\n%s", diff)
	}
	if wr.Greylisted451 == 0 || len(wr.Destinations) != 40 || wr.Unknown != 12 {
		t.Errorf("%d greylisting replies, %d destinations, %d unknown users; want some, 40, 12", wr.Greylisted451, len(wr.Destinations), wr.Unknown)
	}
	for _, d := range wr.Destinations {
		if d.Class == "giant" && (d.ConnsAllowed != 2 || d.MsgsAllowed != 2 || d.MaxConnsSeen == 0) {
			t.Errorf("giant %+v: want 2 connections and 2 messages allowed, some seen", d)
		}
	}
}
