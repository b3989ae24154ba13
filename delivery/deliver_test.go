package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/fakenet"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func TestDeliverMXPreferenceOrder(t *testing.T) {
	t.Parallel()
	w := newWorld(t, fakenet.SinkOptions{}, fakenet.SinkOptions{})
	w.dns.SetMXHosts("example.test", 60, sinkIP(0), sinkIP(1))
	a := w.agent(w.config())

	res := a.Deliver(ctxT(t), request("example.test", "a", "b"))
	checkBriefs(t, repeat(sent, 2), res)
	if got, want := res[0].Relay, w.sinks[0].Addr(); got != want {
		t.Errorf("relay = %q, want %q", got, want)
	}
	if n := w.sinks[0].Transactions(); n != 1 {
		t.Errorf("primary MX got %d transactions, want 1", n)
	}
	if n := w.sinks[1].Connections(); n != 0 {
		t.Errorf("backup MX got %d connections, want 0", n)
	}
	// The backup's address is never looked up while the primary works.
	if n := w.dns.Queries("mx2.example.test", dns.TypeA); n != 0 {
		t.Errorf("backup MX A queries = %d, want 0", n)
	}
	d := w.sinks[0].Deliveries()[0]
	want := fakenet.Delivery{
		From:       "owner@list.test",
		Recipients: []string{"a@example.test", "b@example.test"},
		Data:       []byte(testBody),
		Key:        "<m1@list.test>",
		Size:       int64(len(testBody)),
		SizeParam:  int64(len(testBody)),
		BodyParam:  "8BITMIME",
		Helo:       "fanmail.test",
	}
	d.RemoteAddr = ""
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("delivery (-want +got):\n%s", diff)
	}
}

func TestDeliverFallsBackToNextMX(t *testing.T) {
	t.Parallel()
	refuse := func(code int) func(string) *smtp.SMTPError {
		return func(string) *smtp.SMTPError {
			return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 3, 2}, Message: "not now"}
		}
	}
	tests := []struct {
		name      string
		first     fakenet.SinkOptions
		firstIP   string // "" means sink 0
		wantFirst int    // connections the first MX sees
	}{
		{name: "connection refused", firstIP: closedIP},
		{name: "421 greeting", first: fakenet.SinkOptions{ConnHook: refuse(421)}, wantFirst: 1},
		{name: "554 greeting", first: fakenet.SinkOptions{ConnHook: refuse(554)}, wantFirst: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, tt.first, fakenet.SinkOptions{})
			first := tt.firstIP
			if first == "" {
				first = sinkIP(0)
			}
			w.dns.SetMXHosts("example.test", 60, first, sinkIP(1))
			a := w.agent(w.config())

			res := a.Deliver(ctxT(t), request("example.test", "a", "b", "c"))
			checkBriefs(t, repeat(sent, 3), res)
			if got := res[0].Relay; got != w.sinks[1].Addr() {
				t.Errorf("relay = %q, want the second MX %q", got, w.sinks[1].Addr())
			}
			if n := w.sinks[0].Connections(); n != tt.wantFirst {
				t.Errorf("first MX connections = %d, want %d", n, tt.wantFirst)
			}
			if n := w.sinks[1].RecipientsDelivered(); n != 3 {
				t.Errorf("second MX got %d recipients, want 3", n)
			}
		})
	}
}

func TestDeliverAllMXDown(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.SetMXHosts("example.test", 60, closedIP, "127.0.0.98")
	a := w.agent(w.config())
	res := a.Deliver(ctxT(t), request("example.test", "a", "b"))
	checkBriefs(t, repeat(brief{envelope.Deferred, 0, "4.4.1"}, 2), res)
	if !strings.Contains(res[0].Text, "127.0.0.98") {
		t.Errorf("text %q does not name the last host tried", res[0].Text)
	}
}

func TestDeliverDNSOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		zone  func(w *world)
		want  brief
		text  string // substring of Result.Text
		conns int    // connections the sink should see
	}{
		{
			name:  "implicit MX",
			zone:  func(w *world) { w.dns.SetA("example.test", 60, sinkIP(0)) },
			want:  sent,
			conns: 1,
		},
		{
			name: "null MX fails without connecting",
			zone: func(w *world) {
				w.dns.SetNullMX("example.test", 60)
				w.dns.SetA("example.test", 60, sinkIP(0)) // must not be used
			},
			want: brief{envelope.Failed, 0, "5.1.10"},
			text: "does not accept mail (null MX)",
		},
		{
			name: "NXDOMAIN",
			zone: func(*world) {},
			want: brief{envelope.Failed, 0, "5.1.2"},
			text: "not found",
		},
		{
			name: "no MX and no A",
			zone: func(w *world) { w.dns.AddName("example.test") },
			want: brief{envelope.Failed, 0, "5.4.4"},
			text: "no MX and no address",
		},
		{
			name: "SERVFAIL",
			zone: func(w *world) {
				w.dns.SetMXHosts("example.test", 60, sinkIP(0))
				w.dns.SetRcode("example.test", dns.RcodeServerFailure)
			},
			want: brief{envelope.Deferred, 0, "4.4.3"},
			text: "SERVFAIL",
		},
		{
			name: "DNS timeout",
			zone: func(w *world) {
				w.dns.SetMXHosts("example.test", 60, sinkIP(0))
				w.dns.SetSilent("example.test", true)
			},
			want: brief{envelope.Deferred, 0, "4.4.3"},
			text: "timeout",
		},
		{
			name: "MX host without address",
			zone: func(w *world) {
				w.dns.SetMX("example.test", 60, fakenet.MX{Pref: 10, Host: "gone.example.test"})
			},
			want: brief{envelope.Deferred, 0, "4.4.4"},
			text: "gone.example.test",
		},
		{
			name: "MX host without address, backup works",
			zone: func(w *world) {
				w.dns.SetMX("example.test", 60, fakenet.MX{Pref: 10, Host: "gone.example.test"}, fakenet.MX{Pref: 20, Host: "mx.example.test"})
				w.dns.SetA("mx.example.test", 60, sinkIP(0))
			},
			want:  sent,
			conns: 1,
		},
		{
			name: "truncated UDP answer retried over TCP",
			zone: func(w *world) {
				w.dns.SetMXHosts("example.test", 60, sinkIP(0))
				w.dns.SetTruncate(true)
			},
			want:  sent,
			conns: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			tt.zone(w)
			a := w.agent(w.config())
			res := a.Deliver(ctxT(t), request("example.test", "a", "b"))
			checkBriefs(t, repeat(tt.want, 2), res)
			if !strings.Contains(res[0].Text, tt.text) {
				t.Errorf("text = %q, want it to contain %q", res[0].Text, tt.text)
			}
			if n := w.sinks[0].Connections(); n != tt.conns {
				t.Errorf("sink connections = %d, want %d", n, tt.conns)
			}
		})
	}
}

func TestDeliverPerRecipientReplies(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, nil, fakenet.SinkOptions{RcptHook: fakenet.RcptReplies{
		"busy@": {Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"},
		"gone@": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
	}.Hook})

	res := a.Deliver(ctxT(t), request("example.test", "a", "busy", "b", "gone", "c"))
	want := []envelope.Result{
		{Recipient: "a@example.test", Status: envelope.Delivered, Reply: envelope.Reply{Code: 250, Enhanced: "2.0.0", Text: "OK: queued", Host: "mx1.example.test"}, Relay: w.sinks[0].Addr()},
		{Recipient: "busy@example.test", Status: envelope.Deferred, Reply: envelope.Reply{Code: 452, Enhanced: "4.2.2", Text: "mailbox full", Host: "mx1.example.test"}, Relay: w.sinks[0].Addr()},
		{Recipient: "b@example.test", Status: envelope.Delivered, Reply: envelope.Reply{Code: 250, Enhanced: "2.0.0", Text: "OK: queued", Host: "mx1.example.test"}, Relay: w.sinks[0].Addr()},
		{Recipient: "gone@example.test", Status: envelope.Failed, Reply: envelope.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user", Host: "mx1.example.test"}, Relay: w.sinks[0].Addr()},
		{Recipient: "c@example.test", Status: envelope.Delivered, Reply: envelope.Reply{Code: 250, Enhanced: "2.0.0", Text: "OK: queued", Host: "mx1.example.test"}, Relay: w.sinks[0].Addr()},
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a@example.test", "b@example.test", "c@example.test"}, w.sinks[0].Deliveries()[0].Recipients); diff != "" {
		t.Errorf("sink recipients (-want +got):\n%s", diff)
	}

	// One log line per recipient, with the stable keys.
	lines := strings.Split(strings.TrimSpace(w.logs.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d log lines, want 5:\n%s", len(lines), w.logs.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[3]), &rec); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"msg": "delivery", "qid": "Q1", "rcpt": "gone@example.test", "domain": "example.test",
		"relay": w.sinks[0].Addr(), "code": 550.0, "status": "bounced", "reply": "5.1.1 no such user"} {
		if rec[k] != v {
			t.Errorf("log %s = %v, want %v", k, rec[k], v)
		}
	}
}

func TestDeliverAllRecipientsRejected(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, nil, fakenet.SinkOptions{RcptHook: func(_, to string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}
	}})
	res := a.Deliver(ctxT(t), request("example.test", "a", "b"))
	checkBriefs(t, repeat(brief{envelope.Failed, 550, "5.1.1"}, 2), res)
	if n := w.sinks[0].Transactions(); n != 0 {
		t.Errorf("DATA sent with no accepted recipient: %d transactions", n)
	}
}

func TestDeliverDataReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		code int
		want envelope.Status
	}{
		{"5xx fails accepted recipients", 554, envelope.Failed},
		{"4xx defers accepted recipients", 451, envelope.Deferred},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, a := exampleAgent(t, nil, fakenet.SinkOptions{
				RcptHook: fakenet.RcptReplies{
					"gone@": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
				}.Hook,
				DataHook: func(fakenet.Delivery) error {
					return &smtp.SMTPError{Code: tt.code, EnhancedCode: smtp.EnhancedCode{tt.code / 100, 7, 1}, Message: "content rejected"}
				},
			})
			res := a.Deliver(ctxT(t), request("example.test", "a", "gone", "b"))
			dataBrief := brief{tt.want, tt.code, strings.Replace("x.7.1", "x", string(rune('0'+tt.code/100)), 1)}
			checkBriefs(t, []brief{dataBrief, {envelope.Failed, 550, "5.1.1"}, dataBrief}, res)
			if res[0].Text != "content rejected" {
				t.Errorf("text = %q", res[0].Text)
			}
		})
	}
}

func TestDeliver421AtRcpt(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, nil, fakenet.SinkOptions{RcptHook: fakenet.RcptReplies{
		"gone@": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
		"c@":    {Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"},
	}.Hook})
	res := a.Deliver(ctxT(t), request("example.test", "a", "gone", "c", "d"))
	d := brief{envelope.Deferred, 421, "4.3.2"}
	checkBriefs(t, []brief{d, {envelope.Failed, 550, "5.1.1"}, d, d}, res)
	if n := w.sinks[0].Transactions(); n != 0 {
		t.Errorf("sink got %d transactions after 421, want 0", n)
	}
}

func TestDeliverRouteBypassesDNS(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.SetMXHosts("example.test", 60, closedIP) // DNS would send it nowhere
	cfg := w.config()
	cfg.Routes = map[string]string{"example.test": w.sinks[0].Addr()}
	a := w.agent(cfg)
	env := request("example.test", "a")
	env.Domain = "Example.TEST" // matched lowercased
	res := a.Deliver(ctxT(t), env)
	checkBriefs(t, []brief{sent}, res)
	if n := w.dns.TotalQueries(); n != 0 {
		t.Errorf("DNS saw %d queries, want 0", n)
	}
}

func TestDeliverNullSenderAndRawBody(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, nil)
	body := "Subject: bounce\n\n.leading dot\nbare LF\n"
	env := request("example.test", "a")
	env.Sender = ""
	setBody(&env, body)
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), env))
	d := w.sinks[0].Deliveries()[0]
	if d.From != "" {
		t.Errorf("MAIL FROM = %q, want <>", d.From)
	}
	// Dot-stuffing is undone by the receiver and bare LFs become CRLF.
	if want := "Subject: bounce\r\n\r\n.leading dot\r\nbare LF\r\n"; string(d.Data) != want {
		t.Errorf("body = %q, want %q", d.Data, want)
	}
}

func TestDeliverBadEnvelopes(t *testing.T) {
	t.Parallel()
	_, a := exampleAgent(t, nil)

	env := request("example.test", "a")
	env.Recipients = append(env.Recipients, "evil\r\nRCPT TO:<x@y>", "")
	checkBriefs(t, []brief{sent, {envelope.Failed, 0, "5.1.3"}, {envelope.Failed, 0, "5.1.3"}}, a.Deliver(ctxT(t), env))

	env = request("example.test", "a")
	env.Sender = "x\r\nDATA"
	checkBriefs(t, []brief{{envelope.Failed, 0, "5.1.7"}}, a.Deliver(ctxT(t), env))

	env = request("", "a")
	checkBriefs(t, []brief{{envelope.Deferred, 0, "4.3.0"}}, a.Deliver(ctxT(t), env))

	if res := a.Deliver(ctxT(t), request("example.test")); len(res) != 0 {
		t.Errorf("no recipients gave %d results", len(res))
	}
}

func TestDeliverBodyReadError(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, nil)
	env := request("example.test", "a")
	env.Open = func() io.Reader {
		return io.MultiReader(strings.NewReader("Subject: x\r\n\r\npart"), errReader{errors.New("disk on fire")})
	}
	res := a.Deliver(ctxT(t), env)
	checkBriefs(t, []brief{{envelope.Deferred, 0, "4.3.0"}}, res)
	if n := w.sinks[0].Transactions(); n != 0 {
		t.Errorf("half a message was delivered")
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestDeliverContextCancel(t *testing.T) {
	t.Parallel()
	_, a := exampleAgent(t, nil, fakenet.SinkOptions{DataHook: func(fakenet.Delivery) error {
		time.Sleep(3 * time.Second)
		return nil
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := a.Deliver(ctx, request("example.test", "a"))
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Deliver took %v after its context ended", el)
	}
	checkBriefs(t, []brief{{envelope.Deferred, 0, "4.4.7"}}, res)
}

func TestDeliverAfterClose(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, nil)
	a.Close()
	checkBriefs(t, []brief{{envelope.Deferred, 0, "4.3.2"}}, a.Deliver(ctxT(t), request("example.test", "a")))
	if n := w.dns.TotalQueries(); n != 0 {
		t.Errorf("closed agent made %d DNS queries", n)
	}
}

// TestDefinitiveDNSAnswersFailFast sends 100 concurrent deliveries to a
// null MX domain and to a missing one: one query each, no connection,
// every recipient failed at once.
func TestDefinitiveDNSAnswersFailFast(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.SetNullMX("null.test", 300)
	a := w.agent(w.config())
	start := time.Now()
	var wg sync.WaitGroup
	results := make([][]envelope.Result, 100)
	for i := range results {
		wg.Go(func() {
			results[i] = a.Deliver(ctxT(t), request([]string{"null.test", "nxdomain.test"}[i%2], "a"))
		})
	}
	wg.Wait()
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %v", el)
	}
	for i, r := range results {
		want := brief{envelope.Failed, 0, "5.1.10"}
		if i%2 == 1 {
			want = brief{envelope.Failed, 0, "5.1.2"}
		}
		checkBriefs(t, []brief{want}, r)
	}
	if n := w.dns.Queries("null.test", dns.TypeMX); n != 1 {
		t.Errorf("null.test MX queried %d times, want 1", n)
	}
	if n := w.dns.Queries("nxdomain.test", dns.TypeMX); n != 1 {
		t.Errorf("nxdomain.test MX queried %d times, want 1", n)
	}
	if n := w.dns.TotalQueries(); n != 2 {
		t.Errorf("%d DNS queries in all, want 2 (no A lookups)", n)
	}
	if n := w.sinks[0].Connections(); n != 0 {
		t.Errorf("%d connections", n)
	}
}

// TestFallbackRelay: recipients every MX defers go to the fallback relay
// in the same attempt (sendmail's FallbackMXhost); a 5xx from the MX is
// final and never retried through the fallback.
func TestFallbackRelay(t *testing.T) {
	t.Parallel()
	w := newWorld(t, fakenet.SinkOptions{RcptHook: fakenet.RcptReplies{
		"gone": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
	}.Hook})
	w.dns.SetMXHosts("down.test", 60, closedIP)
	w.dns.SetMXHosts("up.test", 60, sinkIP(0))
	cfg := w.config()
	cfg.FallbackRelay = w.sinks[0].Addr()
	a := w.agent(cfg)

	res := a.Deliver(ctxT(t), request("down.test", "a", "b", "gone"))
	checkBriefs(t, []brief{sent, sent, {envelope.Failed, 550, "5.1.1"}}, res)
	if res[0].Relay != w.sinks[0].Addr() || !strings.Contains(res[0].Text, "via fallback relay") {
		t.Errorf("result %+v does not name the fallback relay", res[0])
	}
	res = a.Deliver(ctxT(t), request("up.test", "c", "gone2"))
	checkBriefs(t, []brief{sent, {envelope.Failed, 550, "5.1.1"}}, res)
	if n := w.sinks[0].Transactions(); n != 2 {
		t.Errorf("%d transactions, want one through the fallback and one direct", n)
	}
}

// TestDeliverReportsProgressPerTransaction: with two recipients per
// transaction, each transaction's final verdicts reach Progress before
// the next transaction starts; deferred recipients are not reported.
func TestDeliverReportsProgressPerTransaction(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, func(cfg *Config) {
		cfg.RcptsPerTxn = 2
	}, fakenet.SinkOptions{RcptHook: func(_, to string) error {
		switch {
		case strings.HasPrefix(to, "busy@"):
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		case strings.HasPrefix(to, "gone@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	type call struct {
		Idx      []int
		Statuses []envelope.Status
		SinkTxns int // transactions the sink had completed when Progress ran
	}
	var calls []call
	req := request("example.test", "a", "busy", "b", "gone", "c")
	req.Progress = func(idx []int, res []envelope.Result) {
		c := call{Idx: idx, SinkTxns: w.sinks[0].Transactions()}
		for k, r := range res {
			if r.Recipient != req.Recipients[idx[k]] {
				t.Errorf("progress result %d is for %s, want %s", k, r.Recipient, req.Recipients[idx[k]])
			}
			c.Statuses = append(c.Statuses, r.Status)
		}
		calls = append(calls, c)
	}
	a.Deliver(ctxT(t), req)
	want := []call{
		{Idx: []int{0}, Statuses: []envelope.Status{envelope.Delivered}, SinkTxns: 1},
		{Idx: []int{2, 3}, Statuses: []envelope.Status{envelope.Delivered, envelope.Failed}, SinkTxns: 2},
		{Idx: []int{4}, Statuses: []envelope.Status{envelope.Delivered}, SinkTxns: 3},
	}
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("progress calls (-want +got):\n%s", diff)
	}
}
