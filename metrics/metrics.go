// Package metrics is the operator's edge beside the pipeline: a
// Prometheus endpoint, a health check and the status that `fanmail
// status` prints. It owns no state of the pipeline: at each scrape it
// reads the counters and summaries the stages keep (ingress.Stats,
// queuegroups.Queue.Summary, delivery.Stats), and the one thing it counts
// itself, each recipient's outcome and how long after acceptance it was
// delivered, it sees by wrapping the queue's Deliverer (deliverer.go).
// cmd/fanmail wires it; nothing in the pipeline imports it.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"fanmail/delivery"
	"fanmail/ingress"
	"fanmail/queuegroups"
)

// Sources are the stages' own views that a scrape reads; a nil one is
// left out.
type Sources struct {
	Ingress  func() ingress.Stats
	Queue    func() []queuegroups.DirSummary
	Delivery func() delivery.Stats
	// Expired returns, by queue group, the recipients the queue gave up
	// on when their lifetime ran out, which count as bounced.
	Expired func() map[string]int64
	// Health checks, by name, for /healthz: each returns nil when its
	// part works.
	Health map[string]func(context.Context) error
}

// Metrics holds the registry and the wrapped deliverer's counters.
type Metrics struct {
	src      Sources
	reg      *prometheus.Registry
	started  time.Time
	outcomes *prometheus.CounterVec   // recipients by group and status, as delivery reported them
	latency  *prometheus.HistogramVec // acceptance to 2xx, by group
	rates    *rates
}

// New returns the metrics of one server, reading src at each scrape.
func New(src Sources) *Metrics {
	m := &Metrics{src: src, reg: prometheus.NewRegistry(), started: time.Now()}
	// Not registered: the collector reports it with the queue's
	// expired recipients added to bounced (descRecipients).
	m.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fanmail_recipients_total"}, []string{"group", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fanmail_delivery_latency_seconds",
		Help: "Time from a post's acceptance (250 after DATA) to a recipient's 2xx, by queue group.",
		// 50ms to 5 days: a fan-out's first round, and retries.
		Buckets: prometheus.ExponentialBucketsRange(0.05, 5*24*3600, 24),
	}, []string{"group"})
	m.reg.MustRegister(m.latency, collector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.rates = newRates(m.sample)
	return m
}

// Handler serves /metrics (Prometheus text format) and /healthz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", m.healthz)
	return mux
}

// Registry is the registry the handler serves, for tests to gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// healthz answers 200 "ok" when every check passes, else 503 with each
// failing check on its own line.
func (m *Metrics) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var failed []error
	for name, check := range m.src.Health {
		if err := check(ctx); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", name, err))
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(failed) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, errors.Join(failed...))
		return
	}
	fmt.Fprintln(w, "ok")
}

// Run keeps the samples Status computes its rates from, until ctx ends.
func (m *Metrics) Run(ctx context.Context) { m.rates.run(ctx) }

// Serve listens on addr and serves Handler until ctx ends; it returns
// once the port is bound, so a bad address is a start-up error.
func (m *Metrics) Serve(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	return ln.Addr(), nil
}

// collector reads the stages' counters at each scrape.
type collector struct{ m *Metrics }

var (
	descRecipients = prometheus.NewDesc("fanmail_recipients_total",
		"Recipients' delivery attempts by queue group and outcome: delivered (2xx), deferred (4xx or no answer; once per attempt) "+
			"or bounced (a 5xx, or the queue lifetime ran out after deferrals).", []string{"group", "status"}, nil)
	descAccepted  = prometheus.NewDesc("fanmail_posts_accepted_total", "Posts answered 250 after DATA.", nil, nil)
	descRejected  = prometheus.NewDesc("fanmail_smtp_rejected_total", "SMTP commands refused, by command and reason (unknown_recipient, loop, too_big, temp_failure, ...).", []string{"command", "reason"}, nil)
	descRefused   = prometheus.NewDesc("fanmail_smtp_connections_refused_total", "SMTP sessions refused with 421, by reason: overload (load control), max_sessions and max_sessions_per_client (the session caps) and max_connection_rate_per_client (the connection rate cap) at connect, too_many_errors (cut short by the error limit).", []string{"reason"}, nil)
	descSessions  = prometheus.NewDesc("fanmail_smtp_sessions", "SMTP sessions open now.", nil, nil)
	descBytes     = prometheus.NewDesc("fanmail_smtp_bytes_total", "Bytes of the inbound SMTP dialogue, by direction: in (commands and messages) and out (replies), counted as plaintext, under TLS too.", []string{"direction"}, nil)
	descSessTotal = prometheus.NewDesc("fanmail_smtp_sessions_total", "SMTP sessions accepted since start.", nil, nil)
	descQueueRcpt = prometheus.NewDesc("fanmail_queue_recipients", "Recipients pending in the queue, by group.", []string{"group"}, nil)
	descQueueMsgs = prometheus.NewDesc("fanmail_queue_messages", "Messages with pending recipients, by group.", []string{"group"}, nil)
	descDeferred  = prometheus.NewDesc("fanmail_queue_deferred_envelopes", "Envelopes waiting for a retry, by group.", []string{"group"}, nil)
	descOldest    = prometheus.NewDesc("fanmail_queue_oldest_age_seconds", "Age of the oldest message with pending recipients, by group (0 when empty).", []string{"group"}, nil)
	descBusy      = prometheus.NewDesc("fanmail_runners_busy", "Queue runners delivering an envelope now, by group.", []string{"group"}, nil)
	descDNSHits   = prometheus.NewDesc("fanmail_dns_cache_hits_total", "DNS lookups answered from the resolver cache.", nil, nil)
	descDNSMisses = prometheus.NewDesc("fanmail_dns_cache_misses_total", "DNS lookups that needed a query.", nil, nil)
	descOpened    = prometheus.NewDesc("fanmail_smtp_client_connections_opened_total", "Outbound SMTP connections dialled.", nil, nil)
	descReused    = prometheus.NewDesc("fanmail_smtp_client_connections_reused_total", "Outbound transactions sent on a cached connection.", nil, nil)
	descStart     = prometheus.NewDesc("fanmail_start_time_seconds", "When the server started, in Unix seconds.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRecipients, descAccepted, descRejected, descRefused, descSessions, descSessTotal, descBytes,
		descQueueRcpt, descQueueMsgs, descDeferred, descOldest, descBusy, descDNSHits, descDNSMisses,
		descOpened, descReused, descStart} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descStart, float64(c.m.started.UnixNano())/1e9)
	for k, v := range c.m.recipients() {
		ch <- prometheus.MustNewConstMetric(descRecipients, prometheus.CounterValue, v, k.group, k.status)
	}
	src := c.m.src
	if src.Ingress != nil {
		st := src.Ingress()
		counter(descAccepted, st.Accepted)
		for r, n := range st.Rejected {
			counter(descRejected, n, r.Command, r.Reason)
		}
		for reason, n := range st.Refused {
			counter(descRefused, n, reason)
		}
		gauge(descSessions, float64(st.Sessions))
		counter(descSessTotal, st.SessionsTotal)
		counter(descBytes, st.BytesIn, "in")
		counter(descBytes, st.BytesOut, "out")
	}
	if src.Queue != nil {
		now := time.Now()
		for _, g := range groupTotals(src.Queue()) {
			gauge(descQueueRcpt, float64(g.Recipients), g.Name)
			gauge(descQueueMsgs, float64(g.Messages), g.Name)
			gauge(descDeferred, float64(g.Deferred), g.Name)
			gauge(descBusy, float64(g.Inflight), g.Name)
			age := 0.0
			if !g.Oldest.IsZero() {
				age = now.Sub(g.Oldest).Seconds()
			}
			gauge(descOldest, age, g.Name)
		}
	}
	if src.Delivery != nil {
		st := src.Delivery()
		counter(descDNSHits, st.DNSCacheHits)
		counter(descDNSMisses, st.DNSCacheMisses)
		counter(descOpened, st.ConnsOpened)
		counter(descReused, st.ConnsReused)
	}
}

// GroupQueue is one queue group's share of the queue, over its
// directories.
type GroupQueue struct {
	Name       string    `json:"name"`
	Messages   int       `json:"messages"`
	Envelopes  int       `json:"envelopes"`
	Recipients int       `json:"recipients"`
	Inflight   int       `json:"inflight"`
	Deferred   int       `json:"deferred"`
	Oldest     time.Time `json:"oldest,omitzero"`
}

// groupTotals adds up directory summaries per group, in their order.
func groupTotals(dirs []queuegroups.DirSummary) []GroupQueue {
	var out []GroupQueue
	at := map[string]int{}
	for _, d := range dirs {
		i, ok := at[d.Group]
		if !ok {
			i = len(out)
			at[d.Group] = i
			out = append(out, GroupQueue{Name: d.Group})
		}
		g := &out[i]
		g.Messages += d.Messages
		g.Envelopes += d.Envelopes
		g.Recipients += d.Recipients
		g.Inflight += d.Inflight
		g.Deferred += d.Deferred
		if !d.Oldest.IsZero() && (g.Oldest.IsZero() || d.Oldest.Before(g.Oldest)) {
			g.Oldest = d.Oldest
		}
	}
	return out
}

// outcome is one series of fanmail_recipients_total.
type outcome struct{ group, status string }

// recipients is each group's recipients by outcome: what delivery
// reported, with the recipients the queue gave up on added to bounced.
func (m *Metrics) recipients() map[outcome]float64 {
	out := map[outcome]float64{}
	ch := make(chan prometheus.Metric, 16)
	go func() {
		m.outcomes.Collect(ch)
		close(ch)
	}()
	for mt := range ch {
		var pb dto.Metric
		if mt.Write(&pb) != nil {
			continue
		}
		var k outcome
		for _, l := range pb.GetLabel() {
			switch l.GetName() {
			case "group":
				k.group = l.GetValue()
			case "status":
				k.status = l.GetValue()
			}
		}
		out[k] += pb.GetCounter().GetValue()
	}
	if m.src.Expired != nil {
		for group, n := range m.src.Expired() {
			if n > 0 {
				out[outcome{group, "bounced"}] += float64(n)
			}
		}
	}
	return out
}

// total adds up the recipients with the given outcome over all groups.
func total(rs map[outcome]float64, status string) float64 {
	sum := 0.0
	for k, v := range rs {
		if k.status == status {
			sum += v
		}
	}
	return sum
}
