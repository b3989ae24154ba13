package delivery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"

	"github.com/google/go-cmp/cmp"
)

// world is one test's network: a DNS server and SMTP sinks that all listen
// on the same port, each on its own 127.0.0.x, so Config.Port reaches any
// of them and an unused 127.0.0.x at that port is a closed port.
type world struct {
	t     *testing.T
	dns   *fakenet.DNS
	sinks []*fakenet.Sink
	port  int
	logs  *testutil.SyncBuffer
}

// sinkIP is the address of sink i; closedIP is never listened on.
func sinkIP(i int) string { return fmt.Sprintf("127.0.0.%d", 10+i) }

const closedIP = "127.0.0.99"

func newWorld(t *testing.T, sinkOpts ...fakenet.SinkOptions) *world {
	t.Helper()
	d, err := fakenet.NewDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	w := &world{t: t, dns: d, logs: &testutil.SyncBuffer{}}
	w.sinks, w.port = startSinks(t, sinkOpts)
	return w
}

// startSinks binds the first sink to an OS-chosen port and the rest to the
// same port on their own addresses, retrying with a fresh port if one of
// those happens to be taken.
func startSinks(t *testing.T, opts []fakenet.SinkOptions) ([]*fakenet.Sink, int) {
	t.Helper()
	if len(opts) == 0 {
		opts = []fakenet.SinkOptions{{}}
	}
	var lastErr error
	for range 10 {
		var sinks []*fakenet.Sink
		port := 0
		for i, o := range opts {
			o.Addr = fmt.Sprintf("%s:%d", sinkIP(i), port)
			o.Timeout = 5 * time.Second
			s, err := fakenet.NewSink(o)
			if err != nil {
				lastErr = err
				break
			}
			sinks = append(sinks, s)
			port = s.Port()
		}
		if len(sinks) == len(opts) {
			t.Cleanup(func() {
				for _, s := range sinks {
					s.Close()
				}
			})
			return sinks, port
		}
		for _, s := range sinks {
			s.Close()
		}
	}
	t.Fatalf("start sinks: %v", lastErr)
	return nil, 0
}

func (w *world) config() Config {
	return Config{
		Resolvers:      []string{w.dns.Addr()},
		DNSTimeout:     300 * time.Millisecond,
		Port:           w.port,
		HELO:           "fanmail.test",
		ConnectTimeout: 2 * time.Second,
		CommandTimeout: 2 * time.Second,
		DataTimeout:    2 * time.Second,
		Logger:         slog.New(slog.NewJSONHandler(w.logs, nil)),
	}
}

// exampleAgent is most tests' setup: a world with sinkOpts' sinks (one
// plain sink when none is given), example.test's MX at sink 0, and an
// agent on the world's config as tweak, if not nil, changes it.
func exampleAgent(t *testing.T, tweak func(*Config), sinkOpts ...fakenet.SinkOptions) (*world, *Agent) {
	t.Helper()
	w := newWorld(t, sinkOpts...)
	w.dns.SetMXHosts("example.test", 60, sinkIP(0))
	cfg := w.config()
	if tweak != nil {
		tweak(&cfg)
	}
	return w, w.agent(cfg)
}

func (w *world) agent(cfg Config) *Agent {
	w.t.Helper()
	return newAgent(w.t, cfg)
}

// newAgent starts an agent that is closed when the test ends.
func newAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// routedAgent is an agent that reaches example.test at addr by a route,
// with no DNS; tweak, if not nil, changes its config first.
func routedAgent(t *testing.T, addr string, tweak func(*Config)) *Agent {
	t.Helper()
	cfg := Config{
		Resolvers:      []string{"127.0.0.1:1"}, // never asked: the domain is routed
		Routes:         map[string]string{"example.test": addr},
		HELO:           "fanmail.test",
		ConnectTimeout: 2 * time.Second,
		CommandTimeout: 2 * time.Second,
		DataTimeout:    2 * time.Second,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	return newAgent(t, cfg)
}

const testBody = "Message-ID: <m1@list.test>\r\nSubject: test\r\n\r\nhello, list\r\n"

func request(domain string, rcpts ...string) envelope.Request {
	var full []string
	for _, r := range rcpts {
		full = append(full, r+"@"+domain)
	}
	r := envelope.Request{QueueID: "Q1"}
	r.Sender, r.Domain, r.Recipients = "owner@list.test", domain, full
	setBody(&r, testBody)
	return r
}

// setBody makes body the message r sends.
func setBody(r *envelope.Request, body string) {
	r.Size, r.Open = int64(len(body)), func() io.Reader { return strings.NewReader(body) }
}

// acceptLoop listens on addr and serves it with testutil.AcceptLoop.
func acceptLoop(t testing.TB, addr string, serve func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	testutil.AcceptLoop(t, ln, serve)
	return ln
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// brief is the part of a Result most tests compare.
type brief struct {
	Status   envelope.Status
	Code     int
	Enhanced string
}

func briefs(rs []envelope.Result) []brief {
	out := make([]brief, len(rs))
	for i, r := range rs {
		out[i] = brief{r.Status, r.Code, r.Enhanced}
	}
	return out
}

func checkBriefs(t *testing.T, want []brief, got []envelope.Result) {
	t.Helper()
	if diff := cmp.Diff(want, briefs(got)); diff != "" {
		t.Errorf("results (-want +got):\n%s\nfull: %+v", diff, got)
	}
}

func repeat(b brief, n int) []brief {
	out := make([]brief, n)
	for i := range out {
		out[i] = b
	}
	return out
}

var (
	sent = brief{envelope.Delivered, 250, "2.0.0"}
)
