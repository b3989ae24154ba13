package delivery

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewRejectsBadConfig(t *testing.T) {
	ok := Config{Resolvers: []string{"127.0.0.1:53"}, HELO: "fanmail.test"}
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error
	}{
		{"port too high", func(c *Config) { c.Port = 70000 }, "port 70000"},
		{"negative port", func(c *Config) { c.Port = -1 }, "port -1"},
		{"negative dns timeout", func(c *Config) { c.DNSTimeout = -time.Second }, "dns timeout"},
		{"negative connect timeout", func(c *Config) { c.ConnectTimeout = -1 }, "connect timeout"},
		{"negative command timeout", func(c *Config) { c.CommandTimeout = -1 }, "command timeout"},
		{"negative data timeout", func(c *Config) { c.DataTimeout = -1 }, "data timeout"},
		{"resolver without port", func(c *Config) { c.Resolvers = []string{"127.0.0.1"} }, `resolver "127.0.0.1"`},
		{"resolver bad port", func(c *Config) { c.Resolvers = []string{"127.0.0.1:x"} }, `resolver "127.0.0.1:x"`},
		{"resolver without host", func(c *Config) { c.Resolvers = []string{":53"} }, "missing host"},
		{"route uppercase domain", func(c *Config) { c.Routes = map[string]string{"Example.test": "127.0.0.1:25"} }, "lowercase"},
		{"route empty domain", func(c *Config) { c.Routes = map[string]string{"": "127.0.0.1:25"} }, "route domain"},
		{"route without port", func(c *Config) { c.Routes = map[string]string{"example.test": "127.0.0.1"} }, "route for example.test"},
		{"route port zero", func(c *Config) { c.Routes = map[string]string{"example.test": "127.0.0.1:0"} }, "bad port"},
		{"helo with space", func(c *Config) { c.HELO = "two words" }, "helo"},
		{"negative idle timeout", func(c *Config) { c.ConnIdleTimeout = -1 }, "connection idle timeout"},
		{"negative max age", func(c *Config) { c.ConnMaxAge = -1 }, "connection max age"},
		{"negative rate delay", func(c *Config) { c.RateDelay = -1 }, "rate delay"},
		{"negative slot wait", func(c *Config) { c.SlotWait = -1 }, "slot wait"},
		{"negative dead suspend", func(c *Config) { c.DeadSuspend = -1 }, "dead suspend"},
		{"negative max conns", func(c *Config) { c.MaxConns = -1 }, "max conns"},
		{"negative initial concurrency", func(c *Config) { c.InitialConcurrency = -1 }, "initial concurrency"},
		{"negative rcpts per txn", func(c *Config) { c.RcptsPerTxn = -1 }, "recipients per transaction"},
		{"negative txns per conn", func(c *Config) { c.TxnsPerConn = -1 }, "transactions per connection"},
		{"negative dead after", func(c *Config) { c.DeadAfter = -1 }, "dead after"},
		{"negative connect timeout min", func(c *Config) { c.ConnectTimeoutMin = -1 }, "connect timeout min"},
		{"negative throttle pause", func(c *Config) { c.ThrottlePause = -1 }, "throttle pause"},
		{"throttle pause max below pause", func(c *Config) { c.ThrottlePause, c.ThrottlePauseMax = time.Minute, time.Second }, "throttle pause max"},
		{"negative greylist retry", func(c *Config) { c.GreylistRetry = -1 }, "greylist retry"},
		{"greylist retry max below first", func(c *Config) { c.GreylistRetry, c.GreylistRetryMax = time.Hour, time.Minute }, "greylist retry max"},
		{"unknown tls mode", func(c *Config) { c.TLS = "sometimes" }, `tls "sometimes"`},
		{"destination without match", func(c *Config) { c.Destinations = []Destination{{Match: "*."}} }, "destination"},
		{"destination bad pattern", func(c *Config) { c.Destinations = []Destination{{Match: "a*b.test"}} }, "destination"},
		{"destination negative limit", func(c *Config) { c.Destinations = []Destination{{Match: "x.test", MaxConns: -2}} }, "must not be negative"},
		{"destination bad tls", func(c *Config) { c.Destinations = []Destination{{Match: "x.test", TLS: "yes"}} }, `tls "yes"`},
		{"reply rule without code", func(c *Config) { c.ReplyRules = []ReplyRule{{Action: ActionHalve}} }, "reply rule code"},
		{"reply rule bad code", func(c *Config) { c.ReplyRules = []ReplyRule{{Code: "x21", Action: ActionHalve}} }, "reply rule code"},
		{"reply rule unknown action", func(c *Config) { c.ReplyRules = []ReplyRule{{Code: "421", Action: "panic"}} }, "unknown action"},
		{"reply rule suspend without time", func(c *Config) { c.ReplyRules = []ReplyRule{{Code: "421", Action: ActionSuspend}} }, "positive duration"},
		{"missing resolv.conf", func(c *Config) {
			c.Resolvers = nil
			c.ResolvConf = filepath.Join(t.TempDir(), "nope")
		}, "read "},
		{"resolv.conf without servers", func(c *Config) {
			c.Resolvers = nil
			c.ResolvConf = filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(c.ResolvConf, []byte("search example.test\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "no DNS servers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			a, err := New(cfg)
			if err == nil {
				a.Close()
				t.Fatalf("New accepted %+v", cfg)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 127.0.0.53\nnameserver 127.0.0.54\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{ResolvConf: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c := a.cfg
	if c.Port != 25 || c.ConnectTimeout != 30*time.Second || c.CommandTimeout != 5*time.Minute ||
		c.DataTimeout != 10*time.Minute || c.DNSTimeout != 5*time.Second || c.HELO == "" || c.Logger == nil {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.ConnCacheSize != 100 || c.ConnIdleTimeout != 5*time.Second || c.ConnMaxAge != 5*time.Minute ||
		c.MaxConns != 10 || c.InitialConcurrency != 5 || c.RcptsPerTxn != 100 || c.TxnsPerConn != 100 ||
		c.SlotWait != 30*time.Second || c.DeadAfter != 5 || c.DeadSuspend != time.Minute || c.TLS != TLSOpportunistic ||
		len(c.ReplyRules) != len(DefaultReplyRules) || c.RateDelay != 0 || c.ConnectTimeoutMin != 5*time.Second ||
		c.ThrottlePause != time.Second || c.ThrottlePauseMax != time.Minute ||
		c.GreylistRetry != 40*time.Second || c.GreylistRetryMax != 30*time.Minute {
		t.Errorf("limit defaults not applied: %+v", c)
	}
	if got := strings.Join(a.res.Servers(), ","); got != "127.0.0.53:53,127.0.0.54:53" {
		t.Errorf("servers from resolv.conf = %s", got)
	}
}
