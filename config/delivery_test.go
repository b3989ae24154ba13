package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func loadString(t *testing.T, data string) (Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fanmail.toml")
	if err := os.WriteFile(path, []byte("hostname = \"mx.test\"\n"+data), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

func TestDeliveryLimitsFromFile(t *testing.T) {
	cfg, err := loadString(t, `
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
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Delivery.DeliveryLimits
	if l.MaxConnections != 8 || l.RateDelay.D() != 250*time.Millisecond || l.TLS != "required" || l.RecipientsPerTransaction != 50 {
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
		_, err := loadString(t, tt.data)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want one naming %s", tt.data, err, tt.want)
		}
	}
}
