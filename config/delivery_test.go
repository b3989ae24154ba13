package config

import (
	"strings"
	"testing"
	"time"

	"fanmail/delivery"
)

// hostnameLine starts the configs of these tests.
const hostnameLine = "hostname = \"mx.test\"\n"

// loadString loads data after hostnameLine.
func TestDeliveryLimitsFromFile(t *testing.T) {
	cfg := mustLoad(t, hostnameLine+`
[delivery]
max_connections = 8
rate_delay = "250ms"
tls = "required"

[[delivery.destination]]
match = "*.google.test"
max_connections = 3
tls = "opportunistic"

[[delivery.reply_rule]]
code = "421 4.7.28"
action = "suspend"
suspend = "15m"
`)
	l := cfg.Delivery.DeliveryLimits
	if l.MaxConnections != 8 || l.RateDelay.D() != 250*time.Millisecond || l.TLS != "required" || l.RecipientsPerTransaction != 100 {
		t.Errorf("limits = %+v", l)
	}
	if len(l.Destinations) != 1 || l.Destinations[0].Match != "*.google.test" || l.Destinations[0].MaxConnections != 3 {
		t.Errorf("destinations = %+v", l.Destinations)
	}
	if len(l.ReplyRules) != 1 || l.ReplyRules[0].Suspend.D() != 15*time.Minute {
		t.Errorf("reply rules = %+v", l.ReplyRules)
	}
	// The effective config prints the new keys under [delivery].
	if s := cfg.String(); !strings.Contains(s, "max_connections = 8") || !strings.Contains(s, "[[delivery.destination]]") {
		t.Errorf("String() lacks the delivery limits:\n%s", s)
	}
}

func TestDeliveryLimitsRejected(t *testing.T) {
	tests := []struct{ data, want string }{
		{"[delivery]\nmax_connections = -1", "delivery.max_connections"},
		{"[delivery]\nconnection_cache_size = -2", "delivery.connection_cache_size"},
		{"[delivery]\nslot_wait = \"-1s\"", "delivery.slot_wait"},
		{"[delivery]\ngreylist_retry = \"-1s\"", "delivery.greylist_retry"},
		{"[delivery]\ngreylist_retry = \"10m\"\ngreylist_retry_max = \"5m\"", "delivery.greylist_retry_max"},
		{"[delivery]\nthrottle_pause = \"2m\"\nthrottle_pause_max = \"1m\"", "delivery.throttle_pause_max"},
		{"[delivery]\nconnect_timeout_min = \"-1s\"", "delivery.connect_timeout_min"},
		{"[delivery]\ntls = \"maybe\"", "delivery.tls"},
		{"[[delivery.destination]]\nmatch = \"\"", "delivery.destination[0].match"},
		{"[[delivery.destination]]\nmatch = \"x.test\"\ntls = \"yes\"", "delivery.destination[0].tls"},
		{"[[delivery.destination]]\nmatch = \"x.test\"\nmax_connections = -3", "delivery.destination[0]"},
		{"[[delivery.reply_rule]]\ncode = \"x\"\naction = \"halve\"", "delivery.reply_rule[0].code"},
		{"[[delivery.reply_rule]]\ncode = \"421\"\naction = \"explode\"", "delivery.reply_rule[0].action"},
		{"[[delivery.reply_rule]]\ncode = \"421\"\naction = \"suspend\"", "delivery.reply_rule[0].suspend"},
		{"[delivery]\nmax_conections = 3", "unknown key"},
	}
	for _, tt := range tests {
		wantRejected(t, hostnameLine+tt.data, tt.want)
	}
}

// TestDeliveryConfigAccepted maps the defaults and a file's settings onto
// delivery.Config and has the agent validate them: the two sets of
// defaults and checks must agree.
func TestDeliveryConfigAccepted(t *testing.T) {
	cfg := Default()
	cfg.Hostname = "mx.test"
	cfg.Delivery.Resolvers = []string{"127.0.0.1:53"}
	dc := cfg.DeliveryConfig(nil)
	a, err := delivery.New(dc)
	if err != nil {
		t.Fatalf("delivery rejects the default config: %v", err)
	}
	a.Close()
	if dc.ReplyRules != nil {
		t.Errorf("default reply rules = %v, want nil (delivery's defaults)", dc.ReplyRules)
	}
	file := mustLoad(t, hostnameLine+`
[delivery]
resolvers = ["127.0.0.1:53"]
recipients_per_transaction = 100
tls = "none"

[[delivery.destination]]
match = ".example.test"
tls = "required"

[[delivery.reply_rule]]
code = "450 4.7.1"
action = "suspend"
suspend = "1m"
`)
	dc = file.DeliveryConfig(nil)
	if dc.RcptsPerTxn != 100 || dc.TLS != delivery.TLSNone || dc.HELO != "mx.test" ||
		len(dc.Destinations) != 1 || dc.Destinations[0].TLS != delivery.TLSRequired ||
		len(dc.ReplyRules) != 1 || dc.ReplyRules[0].Action != delivery.ActionSuspend || dc.ReplyRules[0].Suspend != time.Minute {
		t.Errorf("mapped config = %+v", dc)
	}
	a, err = delivery.New(dc)
	if err != nil {
		t.Fatalf("delivery rejects the mapped config: %v", err)
	}
	a.Close()
}
