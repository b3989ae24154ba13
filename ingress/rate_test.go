package ingress

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/internal/testutil"
)

const tooManyConnections = "421 4.7.0 fanmail.test Error: too many connections from "

// A client gets max_connection_rate_per_client connections in its
// window, then 421 4.7.0 and a closed connection until the window ends;
// other clients are not affected, and the refusals are logged once and
// counted.
func TestConnectionRatePerClient(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	clock := testutil.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	f := startWith(t, Config{MaxMessageSize: 1 << 20, Logger: logs.logger(), Load: Load{
		MaxConnectionRatePerClient: 3, ConnectionRateWindow: time.Minute, Now: clock.Now}})

	for i := range 3 {
		r, g := rawDial(t, f.addr, "127.0.0.2")
		if !strings.HasPrefix(g, "220 ") {
			t.Fatalf("connection %d from 127.0.0.2: %q, want 220", i+1, g)
		}
		if rep := r.cmd("QUIT"); !strings.HasPrefix(rep, "221") {
			t.Fatalf("QUIT: %q", rep)
		}
		clock.Advance(10 * time.Second) // the window started at the first connection
	}
	refuse := func(when string) {
		t.Helper()
		r, g := rawDial(t, f.addr, "127.0.0.2")
		if want := tooManyConnections + "127.0.0.2"; g != want {
			t.Fatalf("%s: %q, want %q", when, g, want)
		}
		r.wantClosed()
	}
	refuse("4th connection in the window")
	clock.Advance(29*time.Second + 999*time.Millisecond)
	refuse("5th connection, 1ms before the window ends")

	if _, g := rawDial(t, f.addr, "127.0.0.3"); !strings.HasPrefix(g, "220 ") {
		t.Errorf("another client, 127.0.0.3: %q, want 220", g)
	}
	if n := logs.count("connection rate limit exceeded, refusing the client's connections until its window ends"); n != 1 {
		t.Errorf("%d warnings for 2 refusals in one window, want 1", n)
	}
	// Counted before the reply is written.
	if n := f.srv.Stats().Refused["max_connection_rate_per_client"]; n != 2 {
		t.Errorf("refusals counted: %d, want 2", n)
	}

	// A new window, with its own limit and its own warning.
	clock.Advance(time.Millisecond)
	for i := range 3 {
		if _, g := rawDial(t, f.addr, "127.0.0.2"); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("connection %d after the window: %q, want 220", i+1, g)
		}
	}
	refuse("4th connection in the second window")
	if n := logs.count("connection rate limit exceeded, refusing the client's connections until its window ends"); n != 2 {
		t.Errorf("%d warnings after refusals in two windows, want 2", n)
	}
}

// Clients in the exempt networks, and relay peers, are never counted.
func TestConnectionRateExempt(t *testing.T) {
	t.Parallel()
	f := startWith(t, Config{MaxMessageSize: 1 << 20, Load: Load{MaxConnectionRatePerClient: 1,
		ConnectionRateExempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.4/31")}},
		Peers: Peers{Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}}})
	for _, from := range []string{"127.0.0.4", "127.0.0.5", "127.0.0.9"} {
		for i := range 5 {
			r, g := rawDial(t, f.addr, from)
			if !strings.HasPrefix(g, "220 ") {
				t.Fatalf("connection %d from exempt %s: %q, want 220", i+1, from, g)
			}
			r.cmd("QUIT")
		}
	}
	rawDial(t, f.addr, "127.0.0.6")
	if r, g := rawDial(t, f.addr, "127.0.0.6"); g != tooManyConnections+"127.0.0.6" {
		t.Errorf("2nd connection from 127.0.0.6, not exempt: %q", g)
	} else {
		r.wantClosed()
	}
}

// The limiter's windows, one client at a time: fixed from the first
// connection, refused attempts counted, IPv6 by /64 (clientKey).
func TestRateLimiterWindows(t *testing.T) {
	t.Parallel()
	type step struct {
		after  time.Duration // clock advance before the connection
		client string
		want   bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"limit then refused", []step{{0, "a", true}, {0, "a", true}, {0, "a", false}, {time.Second, "a", false}}},
		{"window is fixed from the first connection", []step{{0, "a", true}, {50 * time.Second, "a", true},
			{5 * time.Second, "a", false}, {5 * time.Second, "a", true}, {0, "a", true}, {0, "a", false}}},
		{"clients counted apart", []step{{0, "a", true}, {0, "a", true}, {0, "b", true}, {0, "b", true}, {0, "a", false}, {0, "b", false}}},
		{"refusals keep counting but do not extend the window", []step{{0, "a", true}, {0, "a", true},
			{30 * time.Second, "a", false}, {29 * time.Second, "a", false}, {time.Second, "a", true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := testutil.NewClock(time.Unix(1e9, 0))
			l := newRateLimiter(Load{MaxConnectionRatePerClient: 2, ConnectionRateWindow: time.Minute, Now: clock.Now}, nil, discard())
			var got, want []bool
			for _, s := range tt.steps {
				clock.Advance(s.after)
				got = append(got, l.allow(s.client))
				want = append(want, s.want)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("allowed (-want +got):\n%s", diff)
			}
		})
	}
	if l := newRateLimiter(Load{}, nil, discard()); l != nil {
		t.Errorf("limit 0 made a limiter; want none (off)")
	}
}

func TestRateLimiterExempt(t *testing.T) {
	t.Parallel()
	l := newRateLimiter(Load{MaxConnectionRatePerClient: 1, ConnectionRateExempt: DefaultConfig().Load.ConnectionRateExempt},
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("::ffff:198.51.100.0/120")}, discard())
	tests := []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.200.3.4", true},
		{"::1", true},
		{"::ffff:127.0.0.9", true},
		{"192.0.2.77", true},
		{"198.51.100.3", true},
		{"198.51.101.3", false},
		{"192.0.3.1", false},
		{"2001:db8::1", false},
		{"::2", false},
	}
	for _, tt := range tests {
		if got := l.exempted(&net.TCPAddr{IP: net.ParseIP(tt.ip), Port: 2525}); got != tt.want {
			t.Errorf("exempted(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}

// A sweep from many addresses cannot grow the table past its cap; the
// oldest windows make room, the newest clients stay limited, the full
// table is logged once, and the table empties as windows end.
func TestRateLimiterBounded(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	clock := testutil.NewClock(time.Unix(1e9, 0))
	l := newRateLimiter(Load{MaxConnectionRatePerClient: 1, ConnectionRateWindow: time.Minute, Now: clock.Now}, nil, logs.logger())
	l.max = 100
	for i := range 10000 {
		client := fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255)
		if !l.allow(client) {
			t.Fatalf("first connection of %s refused", client)
		}
		if n := l.tracked(); n > l.max {
			t.Fatalf("after %d clients the table holds %d, over its cap %d", i+1, n, l.max)
		}
		clock.Advance(time.Millisecond)
	}
	if n := l.tracked(); n != l.max {
		t.Errorf("table holds %d after the sweep, want its cap %d", n, l.max)
	}
	if l.allow("10.0.39.15") { // the last client of the sweep, still tracked
		t.Errorf("the newest client's second connection was allowed")
	}
	if !l.allow("10.0.0.0") { // the first, forgotten for the newer ones
		t.Errorf("the oldest client, evicted, was refused")
	}
	if n := logs.count("connection rate table full: forgetting the oldest windows to track new clients"); n != 1 {
		t.Errorf("%d table-full warnings for one sweep, want 1", n)
	}
	clock.Advance(time.Minute)
	l.allow("10.200.0.1")
	if n := l.tracked(); n != 1 {
		t.Errorf("table holds %d a window after the sweep, want 1", n)
	}
	if n := logs.count("connection rate table below half full again"); n != 1 {
		t.Errorf("%d all-clear lines, want 1", n)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
