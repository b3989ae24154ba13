package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"fanmail/internal/fakenet"
)

// TestWorldReportArithmetic feeds a hand-made world and arrival times
// through the report: every recipient arrives at twice its lower bound.
func TestWorldReportArithmetic(t *testing.T) {
	const ms = time.Millisecond
	o := &options{world: worldInternet, net: defaultInternet(), permFail: 0.02}
	p := &plan{
		domains: []domain{
			// Transactions of at most 2 over one connection: a and b at
			// 2 + 2 RTT, c on the second transaction at 2 + 4 RTT.
			{name: "d0.bench.test", sink: 0, prof: profile{class: classGiant, rtt: 10 * ms, maxConns: 1, maxRcpts: 2}},
			{name: "d1.bench.test", sink: 1, prof: profile{class: classGreylist, rtt: 10 * ms, greylist: time.Second}},
			{name: "d2.bench.test", sink: -1, kind: kindBlackHole, prof: profile{class: classBlackhole}},
		},
		lists:   []list{{addr: "bench@" + listDomain, members: []string{"a@d0.bench.test", "b@d0.bench.test", "c@d0.bench.test", "x@d1.bench.test", "y@d1.bench.test", "z@d2.bench.test"}}},
		unknown: map[string]bool{"y@d1.bench.test": true},
	}
	p.posts = []post{{id: "<1@bench.test>", rcpt: p.lists[0].addr, expect: p.lists[0].members}}
	col := newCollector()
	t0 := time.Now()
	col.accept("<1@bench.test>", t0)
	for rcpt, after := range map[string]time.Duration{"a": 80 * ms, "b": 80 * ms, "c": 120 * ms, "x": 2080 * ms} {
		domain := map[string]string{"a": "d0", "b": "d0", "c": "d0", "x": "d1"}[rcpt]
		col.arrivals = append(col.arrivals, arrival{"<1@bench.test>", rcpt + "@" + domain + ".bench.test", t0.Add(after)})
	}
	w := &world{}
	for range 2 {
		s, err := fakenet.NewSink(fakenet.SinkOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		w.sinks = append(w.sinks, s)
	}

	wr := worldReport(o, p, col, w)
	f := func(v ...float64) Percentiles {
		out := make([]*float64, 4)
		for i, x := range v {
			out[i] = ptr(x)
		}
		return percentilesOf(out)
	}
	none := Percentiles{}
	// all: 80, 80, 120, 2080 ms against 40, 40, 60, 1040 ms; the 50th
	// percentile is the 2nd arrival of 4, the 90th the 4th.
	want := []ClassReport{
		{Class: "all", Domains: 3, Members: 6, Deliverable: 4, Delivered: 4, Seconds: f(0.08, 2.08, 2.08, 2.08), LowerBound: f(0.04, 1.04, 1.04, 1.04), Ratio: f(2, 2, 2, 2)},
		{Class: "giant", Domains: 1, Members: 3, Deliverable: 3, Delivered: 3, Seconds: f(0.08, 0.12, 0.12, 0.12), LowerBound: f(0.04, 0.06, 0.06, 0.06), Ratio: f(2, 2, 2, 2)},
		{Class: "tail", Seconds: none, LowerBound: none, Ratio: none},
		{Class: "greylist", Domains: 1, Members: 2, Deliverable: 1, Delivered: 1, Seconds: f(2.08, 2.08, 2.08, 2.08), LowerBound: f(1.04, 1.04, 1.04, 1.04), Ratio: f(2, 2, 2, 2)},
		{Class: "tarpit", Seconds: none, LowerBound: none, Ratio: none},
		{Class: "blackhole", Domains: 1, Members: 1, Seconds: none, LowerBound: none, Ratio: none},
	}
	// Every arrival is within the first second but x, in the third.
	for i, tl := range [][]int{{3, 3, 4}, {3}, nil, {0, 0, 1}, nil, nil} {
		want[i].Timeline = tl
	}
	if diff := cmp.Diff(want, wr.Classes, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("classes (-want +got):\n%s", diff)
	}
	if d := wr.Destinations[0]; d.FirstS != 0.08 || d.LastS != 0.12 {
		t.Errorf("d0 first and last arrival %v, %v; want 0.08 and 0.12", d.FirstS, d.LastS)
	}
	if len(wr.Destinations) != 3 || wr.Destinations[0].Deliverable != 3 || wr.Destinations[1].Delivered != 1 || wr.Unknown != 1 {
		t.Errorf("destinations %+v, %d unknown", wr.Destinations, wr.Unknown)
	}
	var out bytes.Buffer
	if err := wr.writeTable(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "0.08s / 0.04s = 2.0×") {
		t.Errorf("table lacks the giants' 50%% cell:\n%s", out.String())
	}
}
