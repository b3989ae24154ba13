package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"

	"fanmail/unsubscribe"
	"fanmail/web"
)

// Web is the one-click unsubscribe endpoint ([web]), off unless listen
// is set. Its limits map onto web.Config, whose DefaultConfig holds the
// defaults; the timeouts are web's own.
type Web struct {
	Listen         string   `toml:"listen"`          // host:port of the plain-HTTP server; "" = off
	BaseURL        string   `toml:"base_url"`        // public https URL prefix of the links, as the reverse proxy serves it
	TrustedProxies []string `toml:"trusted_proxies"` // addresses or prefixes whose X-Forwarded-For is believed
	MaxConnections int      `toml:"max_connections"` // open connections
	RateLimit      float64  `toml:"rate_limit"`      // requests per second per client (IPv4 address or IPv6 /64)
	RateBurst      int      `toml:"rate_burst"`      // requests a client may make at once
}

// webKeys shows web's defaults under their keys.
func webKeys(w web.Config) Web {
	proxies := make([]string, len(w.TrustedProxies))
	for i, p := range w.TrustedProxies {
		proxies[i] = p.String()
	}
	return Web{TrustedProxies: proxies, MaxConnections: w.MaxConnections, RateLimit: w.RateLimit, RateBurst: w.RateBurst}
}

func (w Web) validate(bad func(key, format string, args ...any)) {
	if w.Listen != "" {
		if _, port, err := net.SplitHostPort(w.Listen); err != nil || port == "" {
			bad("web.listen", "%q is not host:port, e.g. \"127.0.0.1:8025\"", w.Listen)
		}
	}
	if w.Listen != "" || w.BaseURL != "" {
		if _, err := unsubscribe.ParseBaseURL(w.BaseURL); err != nil {
			bad("web.base_url", "%v", err)
		}
		if w.Listen == "" {
			bad("web.listen", "not set, but web.base_url is: nothing would answer the links; set it to the address the reverse proxy forwards to, e.g. \"127.0.0.1:8025\"")
		}
	}
	for _, p := range w.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			bad("web.trusted_proxies", "%q is not an address or prefix such as \"127.0.0.1\" or \"10.0.0.0/8\"", p)
		}
	}
	if w.MaxConnections < 1 {
		bad("web.max_connections", "must be at least 1; connections are never unlimited")
	}
	if w.RateLimit <= 0 {
		bad("web.rate_limit", "must be a positive number of requests per second, e.g. 10")
	}
	if w.RateBurst < 1 {
		bad("web.rate_burst", "must be at least 1")
	}
}

// parsePrefix reads "10.0.0.0/8", or an address as the prefix of itself.
func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: %w", s, err)
	}
	return p.Masked(), nil
}

// WebConfig maps [web] onto the endpoint's Config; call it only on a
// validated config with web.listen set.
func (c *Config) WebConfig(log *slog.Logger) web.Config {
	w := web.DefaultConfig()
	w.Listen = c.Web.Listen
	w.TrustedProxies = w.TrustedProxies[:0]
	for _, s := range c.Web.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			w.TrustedProxies = append(w.TrustedProxies, p)
		}
	}
	w.MaxConnections = c.Web.MaxConnections
	w.RateLimit = c.Web.RateLimit
	w.RateBurst = c.Web.RateBurst
	w.Logger = log
	return w
}

// UnsubscribeKeys is the directory of the keys that sign one-click
// unsubscribe links. It belongs in backups with lists.db: losing it
// breaks every link already mailed.
func (c *Config) UnsubscribeKeys() string { return filepath.Join(c.DataDir, "unsubscribe-keys") }
