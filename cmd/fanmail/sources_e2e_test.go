package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"fanmail/internal/fakenet"
)

// A queue group with two source addresses: its connections to one
// destination leave from each in turn, about half each, with each
// address's HELO name, and never more at once from one address than
// source_max_connections, so a receiver that takes two sessions per
// client address refuses none.
func TestSourceAddressesSplitConnections(t *testing.T) {
	n := newFakeNet(t, testDomains(1), func(string) fakenet.SinkOptions {
		return fakenet.SinkOptions{MaxConnsPerIP: 2}
	})
	cfg := n.writeConfigDelivery(t, t.TempDir(), `recipients_per_transaction = 1000
transactions_per_connection = 1
max_connections = 4
initial_concurrency = 4`, `
[queue]
recipients_per_envelope = 5

[[queue.group]]
name = "default"
source_max_connections = 2
[[queue.group.source_addresses]]
address = "127.0.1.1"
helo = "out1.fanmail.test"
[[queue.group.source_addresses]]
address = "127.0.1.2"
helo = "out2.fanmail.test"
`)
	members := makeList(t, cfg, "news@lists.test", testDomains(1), []int{200})
	if out := fanmailCLI(t, cfg, "", "config", "check", cfg); !strings.Contains(out, "source_addresses=127.0.1.1=out1.fanmail.test,127.0.1.2=out2.fanmail.test") {
		t.Errorf("config check does not show the source addresses:\n%s", out)
	}
	p := startFanmail(t, cfg)
	postTo(t, p.addr, "poster@example.org", "news@lists.test", "Subject: from two addresses\r\n\r\nhello\r\n")
	n.waitDelivered(t, len(members), 30*time.Second, p)

	sink := n.sinks["d00.test"]
	// transactions_per_connection = 1: each transaction had a connection
	// of its own, so transactions count connections (distinct peer
	// address:port pairs would not: an ephemeral port can come round
	// again within the test).
	conns, helos := map[string]int{}, map[string]map[string]bool{}
	deliveries := sink.Deliveries()
	for _, d := range deliveries {
		host, _, err := net.SplitHostPort(d.RemoteAddr)
		if err != nil {
			t.Fatal(err)
		}
		conns[host]++
		if helos[host] == nil {
			helos[host] = map[string]bool{}
		}
		helos[host][d.Helo] = true
	}
	total := conns["127.0.1.1"] + conns["127.0.1.2"]
	if total != len(deliveries) || total < 40 {
		t.Fatalf("connections by client address %v: want all %d from 127.0.1.1 and 127.0.1.2, one per envelope (40)", conns, len(deliveries))
	}
	for _, a := range []string{"127.0.1.1", "127.0.1.2"} {
		if c := conns[a]; c < total*4/10 || c > total*6/10 {
			t.Errorf("%s carried %d of %d connections, want about half", a, c, total)
		}
	}
	if !helos["127.0.1.1"]["out1.fanmail.test"] || !helos["127.0.1.2"]["out2.fanmail.test"] || len(helos["127.0.1.1"]) != 1 || len(helos["127.0.1.2"]) != 1 {
		t.Errorf("HELO names by address: %v", helos)
	}
	if st := sink.Stats(); st.Rejected != 0 {
		t.Errorf("the sink refused %d sessions over its 2 per client address", st.Rejected)
	}
	p.stop(t)
}
