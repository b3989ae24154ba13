package queuegroups_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"fanmail/delivery"
	"fanmail/envelope"
	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
	"fanmail/queuegroups"
)

// The queue's admission relies on these; without them every envelope
// would be let through at once.
var _ interface {
	Slots(domain string) (string, int)
	SlotsChanged() <-chan struct{}
} = (*delivery.Agent)(nil)

// TestSlowDestinationsLeaveRunnersFree runs the spool with the real
// delivery agent against a fast domain, a tarpit (its greeting held far
// longer than the test) and a black hole (a connect that never
// completes), ten envelopes each for the slow two, in one post, with
// four runners. The fast domain is delivered while the other two are
// still pending, each holding one runner with one probe; a second post
// to another domain goes through on the runners left; and the tarpit and
// the black hole have seen one connection each, not ten. Nothing here is
// timed: it is counts and order.
func TestSlowDestinationsLeaveRunnersFree(t *testing.T) {
	t.Parallel()
	n := newNet(t, "fast.test", "other.test", "tarpit.test")
	hole, err := fakenet.NewBlackHole(fmt.Sprintf("127.0.0.44:%d", n.port))
	if err != nil {
		t.Skipf("no black hole on this system: %v", err)
	}
	t.Cleanup(func() { hole.Close() })
	n.dns.SetMX("hole.test", 60, fakenet.MX{Pref: 10, Host: "mx.hole.test"})
	n.dns.SetA("mx.hole.test", 60, "127.0.0.44")

	agent, err := delivery.New(delivery.Config{
		Resolvers: []string{n.dns.Addr()}, Port: n.port, HELO: "fanmail.test",
		// Both slow destinations stay pending for as long as the test.
		ConnectTimeout: 10 * time.Minute, ConnectTimeoutMin: 10 * time.Minute, CommandTimeout: 10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close() })
	// Closing interrupts the two deliveries still waiting.
	q := startSpool(t, hourSpool(t, 4), agent, 100*time.Millisecond)

	ids := queuegroups.NewIDSource()
	// The slow domains' envelopes come first in the post.
	first := message(ids, "hole.test", 10, "tarpit.test", 10, "fast.test", 3)
	if err := q.Enqueue(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the fast domain", func() bool { return n.sinks["fast.test"].RecipientsDelivered() == 3 })
	// The sink has the recipients a moment before the queue has settled
	// that delivery; then only the two probes stay.
	waitUntil(t, "2 deliveries in progress once the fast domain is done, one probe each for the tarpit and the black hole",
		func() bool { return q.Stats().Inflight == 2 })
	pending := func(when string) {
		t.Helper()
		md, err := q.Show(first.ID)
		if err != nil {
			t.Fatal(err)
		}
		left := map[string]int{}
		for _, e := range md.Envelopes {
			for _, r := range e.Recipients {
				if r.Status == "pending" {
					left[e.Domain]++
				}
			}
		}
		if left["hole.test"] != 10 || left["tarpit.test"] != 10 || left["fast.test"] != 0 {
			t.Errorf("%s, pending recipients of the first post by domain: %v; want all 10 at the black hole and the tarpit, none at fast.test", when, left)
		}
	}
	pending("with the fast domain done")

	second := message(ids, "other.test", 6)
	if err := q.Enqueue(context.Background(), second); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the second post", func() bool { return n.sinks["other.test"].RecipientsDelivered() == 6 })
	pending("with the second post done")
	waitUntil(t, "2 deliveries in progress once the second post is done, the probes",
		func() bool { return q.Stats().Inflight == 2 })
	if c := n.sinks["tarpit.test"].Connections(); c != 1 {
		t.Errorf("the tarpit saw %d connections, want 1 (its greeting is still on its way)", c)
	}
}

// tnet is a DNS server and one sink per domain, all on one port.
type tnet struct {
	dns   *fakenet.DNS
	sinks map[string]*fakenet.Sink
	port  int
}

// newNet starts a sink for each domain on 127.0.0.4x, on a shared port;
// a domain named tarpit.* holds its greeting for an hour.
func newNet(t *testing.T, domains ...string) *tnet {
	t.Helper()
	return newNetAt(t, 40, domains, func(dom string) fakenet.SinkOptions {
		var o fakenet.SinkOptions
		if dom == "tarpit.test" {
			o.GreetDelay, o.Timeout = time.Hour, 2*time.Hour
		}
		return o
	})
}

// newNetAt starts a sink with opts(domain) for each domain, in order, on
// 127.0.0.(first+i) and one shared port (a zero Timeout is 5s), each
// domain's MX pointing at its sink.
func newNetAt(t *testing.T, first int, domains []string, opts func(string) fakenet.SinkOptions) *tnet {
	t.Helper()
	d, err := fakenet.NewDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	for range 10 {
		n := &tnet{dns: d, sinks: map[string]*fakenet.Sink{}}
		ok := true
		for i, dom := range domains {
			o := opts(dom)
			o.Addr = fmt.Sprintf("127.0.0.%d:%d", first+i, n.port)
			if o.Timeout == 0 {
				o.Timeout = 5 * time.Second
			}
			s, err := fakenet.NewSink(o)
			if err != nil {
				ok = false
				break
			}
			t.Cleanup(func() { s.Close() })
			n.sinks[dom], n.port = s, s.Port()
			d.SetMX(dom, 60, fakenet.MX{Pref: 10, Host: "mx." + dom})
			d.SetA("mx."+dom, 60, s.Host())
		}
		if ok {
			return n
		}
	}
	t.Fatal("cannot start the sinks on one port")
	return nil
}

// message is a post with, for each (domain, count) pair, count envelopes
// of one recipient each.
func message(ids *queuegroups.IDSource, spec ...any) *queuegroups.Message {
	m := &queuegroups.Message{ID: ids.Next(), Received: time.Now(), Body: envelope.Bytes("Subject: hi\r\n\r\nhello\r\n")}
	var p queuegroups.Part
	for i := 0; i < len(spec); i += 2 {
		dom, count := spec[i].(string), spec[i+1].(int)
		for k := range count {
			p.Envelopes = append(p.Envelopes, envelope.Envelope{Sender: "owner-list@example.org", Domain: dom,
				Recipients: []string{fmt.Sprintf("u%d-%s@%s", k, m.ID, dom)}})
		}
	}
	m.Parts = []queuegroups.Part{p}
	return m
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, what, cond)
}
