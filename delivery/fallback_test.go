package delivery

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/envelope"
	"fanmail/internal/fakenet"
)

// What the fallback relay gets under each policy: every attempt's MX
// deferrals, or, for a first-attempt node, whatever its first attempt
// left (greylisted too) and every later attempt whole, the MX untried.
func TestFallbackPolicy(t *testing.T) {
	t.Parallel()
	tempFail := fakenet.SinkOptions{RcptHook: fakenet.RcptReplies{
		"": {Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}}.Hook}
	greylist := fakenet.SinkOptions{Greylist: time.Hour}
	viaRelay := brief{envelope.Delivered, 250, "2.0.0"}
	tests := []struct {
		name     string
		mx       fakenet.SinkOptions
		policy   FallbackPolicy
		attempts int
		want     brief
		mxConns  int // connections the MX sink sees
	}{
		{"every attempt: MX deferral", tempFail, FallbackEveryAttempt, 0, viaRelay, 1},
		{"every attempt: greylisted stays", greylist, FallbackEveryAttempt, 0, brief{envelope.Deferred, 451, "4.7.1"}, 1},
		{"every attempt: a retry tries the MX", tempFail, FallbackEveryAttempt, 1, viaRelay, 1},
		{"first attempt: MX deferral", tempFail, FallbackAfterFirstAttempt, 0, viaRelay, 1},
		{"first attempt: greylisted goes too", greylist, FallbackAfterFirstAttempt, 0, viaRelay, 1},
		{"first-attempt node's retry: relay only", tempFail, FallbackAfterFirstAttempt, 2, viaRelay, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, tt.mx, fakenet.SinkOptions{})
			w.dns.SetMXHosts("example.test", 300, sinkIP(0))
			cfg := w.config()
			cfg.FallbackRelay, cfg.FallbackPolicy = w.sinks[1].Addr(), tt.policy
			a := w.agent(cfg)
			req := request("example.test", "a", "b")
			req.Attempts = tt.attempts
			res := a.Deliver(ctxT(t), req)
			checkBriefs(t, []brief{tt.want, tt.want}, res)
			if tt.want == viaRelay && !strings.HasPrefix(res[0].Text, "via fallback relay: ") {
				t.Errorf("result text %q does not say the relay took it", res[0].Text)
			}
			if got := w.sinks[0].Connections(); got != tt.mxConns {
				t.Errorf("MX connections %d, want %d", got, tt.mxConns)
			}
			if got, want := w.sinks[1].RecipientsDelivered(), map[bool]int{true: 2, false: 0}[tt.want == viaRelay]; got != want {
				t.Errorf("the relay took %d recipients, want %d", got, want)
			}
		})
	}
}

// The client certificate goes to the fallback relay only.
func TestClientCertForRelayOnly(t *testing.T) {
	t.Parallel()
	cert := &tls.Certificate{}
	cfg := Config{FallbackRelay: "192.0.2.25:25", ClientCert: func() (*tls.Certificate, error) { return cert, nil }}
	if f := cfg.clientCertFor("198.51.100.1:25"); f != nil {
		t.Error("a client certificate is offered to an MX")
	}
	f := cfg.clientCertFor("192.0.2.25:25")
	if f == nil {
		t.Fatal("no client certificate for the fallback relay")
	}
	if c, err := f(nil); c != cert || err != nil {
		t.Errorf("client certificate %p, %v; want the configured one", c, err)
	}
}

func TestFallbackPolicyRejected(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{FallbackPolicy: "sometimes", FallbackRelay: "127.0.0.1:25"},
		{FallbackPolicy: FallbackAfterFirstAttempt},
	} {
		cfg.HELO, cfg.Resolvers = "fanmail.test", []string{"127.0.0.1:1"}
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "fallback policy") {
			t.Errorf("New with policy %q, relay %q: %v, want an error", cfg.FallbackPolicy, cfg.FallbackRelay, err)
		}
	}
}
