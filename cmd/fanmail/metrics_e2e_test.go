package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
)

var metricsAddrRE = regexp.MustCompile(`"fanmail started".* metrics=(\S+)`)

// After a 10,000-member fan-out the metrics say what the sinks saw:
// every recipient delivered and timed, one post accepted, one RCPT
// refused, as many connections opened as the sinks accepted, and an
// empty queue; /healthz is ok, and fanmail status shows the same.
func TestMetricsEqualSinkCounts(t *testing.T) {
	domains := testDomains(20)
	n := newFakeNet(t, domains, nil)
	cfg := n.writeConfig(t, t.TempDir(), "\n[metrics]\nlisten = \"127.0.0.1:0\"\n")
	members := makeList(t, cfg, "big@lists.test", domains, each(len(domains), 500))
	p := startFanmail(t, cfg)
	base := p.httpBase(t, metricsAddrRE, "metrics address")

	c := mailFrom(t, p.addr, "poster.example.org", "poster@example.org")
	if err := c.Rcpt("nobody@lists.test", nil); err == nil {
		t.Fatal("unknown recipient accepted")
	}
	c.Close()
	postTo(t, p.addr, "poster@example.org", "big@lists.test", "Subject: fan-out\r\n\r\nhello\r\n")
	n.waitDelivered(t, len(members), 2*time.Minute, p)

	var conns, txns int
	for _, s := range n.sinks {
		conns += s.Connections()
		txns += s.Transactions()
	}
	// The queue settles a moment after the last 250.
	var fams map[string]*dto.MetricFamily
	testutil.Poll(10*time.Second, 50*time.Millisecond, func() bool {
		fams = scrape(t, base+"/metrics")
		return value(fams, "fanmail_queue_recipients", "group", "default") == 0 &&
			value(fams, "fanmail_runners_busy", "group", "default") == 0
	})
	want := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"fanmail_posts_accepted_total", nil, 1},
		{"fanmail_smtp_rejected_total", []string{"command", "RCPT", "reason", "unknown_recipient"}, 1},
		{"fanmail_recipients_total", []string{"group", "default", "status", "delivered"}, float64(n.delivered())},
		{"fanmail_recipients_total", []string{"group", "default", "status", "delivered"}, float64(len(members))},
		{"fanmail_delivery_latency_seconds", []string{"group", "default"}, float64(len(members))}, // the count
		{"fanmail_queue_recipients", []string{"group", "default"}, 0},
		{"fanmail_runners_busy", []string{"group", "default"}, 0},
		{"fanmail_smtp_client_connections_opened_total", nil, float64(conns)},
		// One transaction per envelope here, so every other one went
		// over a reused connection.
		{"fanmail_smtp_client_connections_reused_total", nil, float64(txns - conns)},
		{"fanmail_smtp_sessions_total", nil, 2},
	}
	for _, w := range want {
		if got := value(fams, w.name, w.labels...); got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.want)
		}
	}
	if hits, misses := value(fams, "fanmail_dns_cache_hits_total"), value(fams, "fanmail_dns_cache_misses_total"); misses < float64(len(domains)) || hits == 0 {
		t.Errorf("DNS cache: %v hits, %v misses; want a miss per domain at least, and hits", hits, misses)
	}

	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("/healthz: %s %q", resp.Status, body)
	}

	status := fanmailCLI(t, cfg, "", "status")
	for _, s := range []string{"1 post accepted", fmt.Sprintf("%d delivered", len(members)), "default", "up "} {
		if !strings.Contains(status, s) {
			t.Errorf("fanmail status lacks %q:\n%s", s, status)
		}
	}
	p.stop(t)
}

// scrape fetches and parses a Prometheus text page.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value is the sample of family name whose labels include the given
// name, value pairs: a counter's or gauge's value, a histogram's count;
// -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// Bounced counts both kinds of failure: recipients refused with 5xx and
// recipients the queue gives up on when their lifetime runs out after
// 4xx after 4xx. Each counter equals what the sinks saw: delivered the
// recipients they took (and the DSNs read inside fanmail), deferred the RCPTs answered
// 451, bounced the RCPTs answered 550 plus the recipients never taken.
func TestMetricsBouncedCountsExpired(t *testing.T) {
	domains := []string{"d00.test", "d01.test", "d02.test", "lists.test"}
	n := newFakeNet(t, domains, func(d string) fakenet.SinkOptions {
		switch d {
		case "d01.test":
			return fakenet.SinkOptions{RcptHook: fakenet.RcptReplies{
				"member000": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}}.Hook}
		case "d02.test":
			return fakenet.SinkOptions{RcptHook: fakenet.RcptReplies{
				"member": {Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}}.Hook}
		}
		return fakenet.SinkOptions{}
	})
	cfg := n.writeConfig(t, t.TempDir(), `
[metrics]
listen = "127.0.0.1:0"

[queue]
retry_min = "100ms"
retry_max = "300ms"
min_queue_age = "100ms"
queuereturn = "3s"
`)
	makeList(t, cfg, "big@lists.test", domains[:3], []int{20, 20, 10})
	p := startFanmail(t, cfg)
	base := p.httpBase(t, metricsAddrRE, "metrics address")
	postTo(t, p.addr, "poster@example.org", "big@lists.test", "Subject: fan-out\r\n\r\nhello\r\n")

	sum := func(fams map[string]*dto.MetricFamily, name, status string) float64 {
		total := 0.0
		for _, mt := range fams[name].GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "status" && l.GetValue() == status {
					total += mt.GetCounter().GetValue()
				}
			}
		}
		return total
	}
	var fams map[string]*dto.MetricFamily
	// Settled means both DSNs (one for d01's refusals at once, one for
	// d02's expiry) were read inside: the expiry counts as bounced a
	// moment before its DSN is queued, so bounced == 20 alone is not
	// enough.
	if !testutil.Poll(30*time.Second, 100*time.Millisecond, func() bool {
		fams = scrape(t, base+"/metrics")
		return sum(fams, "fanmail_recipients_total", "bounced") == 20 && value(fams, "fanmail_recipients_total", "group", "control", "status", "delivered") >= 2 &&
			value(fams, "fanmail_queue_recipients", "group", "default") == 0 && value(fams, "fanmail_queue_recipients", "group", "control") == 0
	}) {
		p.dumpLog(t)
		t.Fatalf("queue never settled: bounced %v, queue %v", sum(fams, "fanmail_recipients_total", "bounced"),
			value(fams, "fanmail_queue_recipients", "group", "default"))
	}
	var taken, refused451, refused550 int
	for _, s := range n.sinks {
		taken += s.RecipientsDelivered()
	}
	refused451 = n.sinks["d02.test"].Stats().RcptRejected
	refused550 = n.sinks["d01.test"].Stats().RcptRejected
	if refused550 != 10 || refused451 < 10 {
		t.Fatalf("sinks refused %d with 550 and %d with 451, want 10 and at least 10", refused550, refused451)
	}
	for _, w := range []struct {
		status string
		want   int
	}{
		{"deferred", refused451},
		{"bounced", refused550 + 10}, // d02.test's 10 members expired
	} {
		if got := sum(fams, "fanmail_recipients_total", w.status); got != float64(w.want) {
			t.Errorf("fanmail_recipients_total{status=%q} = %v, want %d", w.status, got, w.want)
		}
	}
	if !strings.Contains(fanmailCLI(t, cfg, "", "status"), "20 bounced") {
		t.Errorf("fanmail status does not count the 20 bounced:\n%s", fanmailCLI(t, cfg, "", "status"))
	}
	p.stop(t) // which writes out the last log lines
	// The DSNs to the list's bounce address are delivered inside
	// fanmail, which reads them.
	inside := strings.Count(p.log.String(), "relay=listmail list=big@lists.test role=bounces status=sent")
	if got := sum(fams, "fanmail_recipients_total", "delivered"); inside == 0 || got != float64(taken+inside) {
		t.Errorf("fanmail_recipients_total{status=\"delivered\"} = %v, want %d at the sinks and %d DSNs read inside", got, taken, inside)
	}
}

// The server runs under a soft memory limit: derived from the cap on
// deliveries in progress, or memory_limit, or GOMEMLIMIT from the
// environment, which wins; the Go runtime's own figure on /metrics
// shows it is in force, and the start-up line names it.
func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		top   string // keys before the config's first table
		extra string
		env   []string
		want  int64
		shown string
	}{
		{"derived", "", "[queue]\nmax_queue_children = 100\n", nil, 96<<20 + 100*128<<10, "memory_limit=108MB"},
		{"configured", "memory_limit = \"200MB\"\n", "", nil, 200 << 20, "memory_limit=200MB"},
		{"environment", "memory_limit = \"200MB\"\n", "", []string{"GOMEMLIMIT=300MiB"}, 300 << 20, `memory_limit="GOMEMLIMIT=300MiB"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := newFakeNet(t, []string{"a.test"}, nil)
			cfg := n.newConfig(t, tt.extra+"\n[metrics]\nlisten = \"127.0.0.1:0\"\n")
			text, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfg, append([]byte(tt.top), text...), 0o600); err != nil {
				t.Fatal(err)
			}
			p := startFanmail(t, cfg, tt.env...)
			mustLog(t, p, tt.shown, 10*time.Second)
			base := p.httpBase(t, metricsAddrRE, "metrics address")
			if got := value(scrape(t, base+"/metrics"), "go_gc_gomemlimit_bytes"); got != float64(tt.want) {
				t.Errorf("go_gc_gomemlimit_bytes = %.0f, want %d", got, tt.want)
			}
		})
	}
}
