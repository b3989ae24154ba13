package delivery

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
	"fanmail/internal/fakenet"
)

// twoSources is a pool of 127.0.0.21 and 127.0.0.22 with their names.
func twoSources(perSource int) map[string]SourcePool {
	return map[string]SourcePool{"bulk": {MaxConnsPerSource: perSource, Addrs: []SourceAddr{
		{IP: netip.MustParseAddr("127.0.0.21"), HELO: "out1.list.test"},
		{IP: netip.MustParseAddr("127.0.0.22"), HELO: "out2.list.test"},
	}}}
}

// peers counts a sink's deliveries by client address, and the HELO
// names each address gave.
func peers(t *testing.T, s *fakenet.Sink) (conns map[string]int, helos map[string]string) {
	t.Helper()
	conns, helos = map[string]int{}, map[string]string{}
	for _, d := range s.Deliveries() {
		host, _, err := net.SplitHostPort(d.RemoteAddr)
		if err != nil {
			t.Fatal(err)
		}
		// Where each delivery has a connection of its own, this is its
		// connections; counting distinct host:port pairs instead missed
		// one whenever a closed connection's port was given out again.
		conns[host]++
		helos[host] = d.Helo
	}
	return conns, helos
}

// A group's connections leave from its source addresses in turn, each
// with its own HELO name.
func TestSourceAddressesRoundRobin(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := routedAgent(t, w.sinks[0].Addr(), func(c *Config) {
		c.Sources = twoSources(0)
		c.ConnCacheSize = -1 // a new connection for every delivery
	})
	for range 10 {
		req := request("example.test", "a")
		req.Group = "bulk"
		checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), req))
	}
	if got := w.sinks[0].Connections(); got != 10 {
		t.Errorf("%d connections for 10 deliveries, want one each", got)
	}
	conns, helos := peers(t, w.sinks[0])
	if diff := cmp.Diff(map[string]int{"127.0.0.21": 5, "127.0.0.22": 5}, conns); diff != "" {
		t.Errorf("connections by source address (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"127.0.0.21": "out1.list.test", "127.0.0.22": "out2.list.test"}, helos); diff != "" {
		t.Errorf("HELO by source address (-want +got):\n%s", diff)
	}
}

// No address has more connections open to a destination than its limit,
// so a receiver that takes two sessions per client address never refuses
// one, while the group as a whole uses both addresses' allowance.
func TestSourceAddressLimit(t *testing.T) {
	t.Parallel()
	w := newWorld(t, fakenet.SinkOptions{MaxConnsPerIP: 2, DataHook: func(fakenet.Delivery) error {
		time.Sleep(100 * time.Millisecond)
		return nil
	}})
	a := routedAgent(t, w.sinks[0].Addr(), func(c *Config) {
		c.Sources = twoSources(2)
		c.MaxConns, c.InitialConcurrency = 8, 8
		c.ConnCacheSize = -1
	})
	var wg sync.WaitGroup
	results := make([][]envelope.Result, 16)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := request("example.test", "a")
			req.Group = "bulk"
			results[i] = a.Deliver(ctxT(t), req)
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r[0].Status != envelope.Delivered {
			t.Errorf("result %+v, want delivered", r[0])
		}
	}
	st := w.sinks[0].Stats()
	if st.Rejected != 0 || st.MaxConcurrentConns > 4 || st.MaxConcurrentConns < 3 {
		t.Errorf("sink refused %d sessions, had up to %d at once; want none refused and 3 or 4 at once (2 per address)",
			st.Rejected, st.MaxConcurrentConns)
	}
}

// A cached connection is reused only by deliveries of its own source
// pool: a group without one never sends from another group's address.
func TestSourcePoolsKeepTheirConnections(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := routedAgent(t, w.sinks[0].Addr(), func(c *Config) {
		c.Sources = twoSources(0)
		c.MaxConns, c.InitialConcurrency = 1, 1
		c.ConnIdleTimeout = time.Minute
	})
	for _, group := range []string{"bulk", "default", "bulk", "default"} {
		req := request("example.test", "a")
		req.Group = group
		checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), req))
	}
	var got []string
	for _, d := range w.sinks[0].Deliveries() {
		host, _, _ := net.SplitHostPort(d.RemoteAddr)
		got = append(got, host)
	}
	// MaxConns 1: each switch closes the other pool's idle connection.
	want := []string{"127.0.0.21", "127.0.0.1", "127.0.0.22", "127.0.0.1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("client addresses in delivery order (-want +got):\n%s", diff)
	}
}

func TestSourceConfigRejected(t *testing.T) {
	t.Parallel()
	ip := netip.MustParseAddr
	tests := []struct {
		name  string
		pools map[string]SourcePool
		want  string
	}{
		{"no addresses", map[string]SourcePool{"bulk": {}}, "none given"},
		{"unspecified", map[string]SourcePool{"bulk": {Addrs: []SourceAddr{{IP: ip("0.0.0.0")}}}}, "not a unicast address"},
		{"twice", map[string]SourcePool{"bulk": {Addrs: []SourceAddr{{IP: ip("127.0.0.21")}, {IP: ip("127.0.0.21")}}}}, "given twice"},
		{"HELO", map[string]SourcePool{"bulk": {Addrs: []SourceAddr{{IP: ip("127.0.0.21"), HELO: "a b"}}}}, "must be one word"},
		{"negative limit", map[string]SourcePool{"bulk": {MaxConnsPerSource: -1, Addrs: []SourceAddr{{IP: ip("127.0.0.21")}}}}, "negative"},
		{"not local", map[string]SourcePool{"bulk": {Addrs: []SourceAddr{{IP: ip("192.0.2.1")}}}}, "not an address of this host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{Resolvers: []string{"127.0.0.1:1"}, HELO: "fanmail.test", Sources: tt.pools})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error with %q", err, tt.want)
			}
		})
	}
}
