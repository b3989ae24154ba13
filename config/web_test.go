package config

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"fanmail/web"
)

func TestWebOffByDefault(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Web.Listen != "" || cfg.Web.BaseURL != "" {
		t.Errorf("[web] is on by default: %+v", cfg.Web)
	}
	// The defaults config shows are web's, and map back unchanged.
	cfg.Web.Listen = "127.0.0.1:8025"
	want := web.DefaultConfig()
	want.Listen = "127.0.0.1:8025"
	if diff := cmp.Diff(want, cfg.WebConfig(nil), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("web config from the defaults (-web.DefaultConfig +mapped):\n%s", diff)
	}
	if got := cfg.UnsubscribeKeys(); got != filepath.Join("fanmail-data", "unsubscribe-keys") {
		t.Errorf("key directory %q", got)
	}
}

func TestWebSection(t *testing.T) {
	cfg := mustLoad(t, `hostname = "mx.example.org"
[web]
listen = "127.0.0.1:8025"
base_url = "https://lists.example.org/"
trusted_proxies = ["10.1.2.3", "2001:db8::/32", "::ffff:192.0.2.1", "192.168.7.9/16"]
max_connections = 50
rate_limit = 2.5
rate_burst = 5
`)
	w := cfg.WebConfig(nil)
	got := []any{w.Listen, w.TrustedProxies, w.MaxConnections, w.RateLimit, w.RateBurst}
	want := []any{"127.0.0.1:8025", []netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.168.0.0/16"),
	}, 50, 2.5, 5}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("web config (-want +got):\n%s", diff)
	}
	// An empty list trusts no proxy.
	cfg = mustLoad(t, "[web]\nlisten = \"127.0.0.1:8025\"\nbase_url = \"http://127.0.0.1:8025\"\ntrusted_proxies = []")
	if p := cfg.WebConfig(nil).TrustedProxies; len(p) != 0 {
		t.Errorf("trusted_proxies = [] maps to %v", p)
	}
}

// Every rejected [web] value names its key and says what is wrong.
func TestWebRejected(t *testing.T) {
	on := "[web]\nlisten = \"127.0.0.1:8025\"\n"
	tests := []struct{ text, want string }{
		{"[web]\nlisten = \"8025\"\nbase_url = \"https://l.example.org\"", `web.listen: "8025" is not host:port`},
		{"[web]\nlisten = \"127.0.0.1:\"\nbase_url = \"https://l.example.org\"", `web.listen: "127.0.0.1:" is not host:port`},
		{on, "web.base_url: not set; give the public https URL"},
		{on + `base_url = "lists.example.org"`, "web.base_url: \"lists.example.org\" is not an absolute https URL"},
		{on + `base_url = "http://lists.example.org"`, "web.base_url: \"http://lists.example.org\" is plain http: RFC 8058 requires https"},
		{on + `base_url = "https://lists.example.org/?x=1"`, "web.base_url: \"https://lists.example.org/?x=1\" has a query"},
		{on + `base_url = "https://lists.example.org/#x"`, "web.base_url"},
		{on + `base_url = "https://u:p@lists.example.org"`, "web.base_url: \"https://u:p@lists.example.org\" carries a user name"},
		{on + `base_url = "https://lists.example.org/a b"`, "web.base_url"},
		{on + `base_url = "https://` + strings.Repeat("x", 300) + `"`, "web.base_url: 308 characters, more than 256"},
		{"[web]\nbase_url = \"https://lists.example.org\"", "web.listen: not set, but web.base_url is"},
		{on + "base_url = \"https://l.example.org\"\ntrusted_proxies = [\"localhost\"]", `web.trusted_proxies: "localhost" is not an address or prefix`},
		{on + "base_url = \"https://l.example.org\"\ntrusted_proxies = [\"10.0.0.0/33\"]", "web.trusted_proxies"},
		{on + "base_url = \"https://l.example.org\"\nmax_connections = 0", "web.max_connections: must be at least 1"},
		{on + "base_url = \"https://l.example.org\"\nrate_limit = 0", "web.rate_limit: must be a positive number"},
		{on + "base_url = \"https://l.example.org\"\nrate_limit = -1", "web.rate_limit"},
		{on + "base_url = \"https://l.example.org\"\nrate_burst = 0", "web.rate_burst: must be at least 1"},
		{on + "base_url = \"https://l.example.org\"\nbaseurl = \"x\"", "web.baseurl: unknown key"},
		{on + "base_url = \"https://l.example.org\"\ntls_cert = \"x\"", "web.tls_cert: unknown key"},
	}
	for _, tt := range tests {
		wantRejected(t, tt.text, tt.want)
	}
}
