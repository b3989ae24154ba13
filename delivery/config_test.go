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
	if got := strings.Join(a.res.servers, ","); got != "127.0.0.53:53,127.0.0.54:53" {
		t.Errorf("servers from resolv.conf = %s", got)
	}
}
