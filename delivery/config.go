package delivery

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config configures an Agent. Zero fields take the defaults below.
type Config struct {
	// Resolvers are DNS servers as host:port, tried in order. Empty means
	// the nameservers of ResolvConf.
	Resolvers []string
	// ResolvConf is read when Resolvers is empty; default /etc/resolv.conf.
	ResolvConf string
	// DNSTimeout bounds each DNS query (UDP, or the TCP retry); default 5s.
	DNSTimeout time.Duration
	// Port is the SMTP port used for MX hosts; default 25. Tests point it
	// at their sinks, which all listen on one port on different 127.x IPs.
	Port int
	// Routes maps a lowercase domain to a fixed "host:port", bypassing MX
	// lookups for that domain (exact match, no subdomains). Use an IP: a
	// host name here is resolved by the operating system, not Resolvers.
	Routes map[string]string
	// HELO is the name given in EHLO/HELO; default os.Hostname().
	HELO string
	// ConnectTimeout bounds the TCP connect; default 30s. RFC 5321 only
	// covers the greeting (5m), far too long to wait on a dead host.
	ConnectTimeout time.Duration
	// CommandTimeout bounds the greeting and each command's reply; default
	// 5m (RFC 5321 §4.5.3.2.1-5).
	CommandTimeout time.Duration
	// DataTimeout bounds sending the body and waiting for the reply to the
	// final dot; default 10m (RFC 5321 §4.5.3.2.6).
	DataTimeout time.Duration
	// Logger receives one line per recipient attempt; default discards.
	Logger *slog.Logger
}

const (
	defaultResolvConf     = "/etc/resolv.conf"
	defaultDNSTimeout     = 5 * time.Second
	defaultPort           = 25
	defaultConnectTimeout = 30 * time.Second
	defaultCommandTimeout = 5 * time.Minute
	defaultDataTimeout    = 10 * time.Minute
)

// withDefaults returns cfg with every zero field set to its default and
// checks what is left; it never modifies the caller's maps or slices.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = defaultResolvConf
	}
	if cfg.Port == 0 {
		cfg.Port = defaultPort
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return cfg, fmt.Errorf("port %d: out of range 1-65535", cfg.Port)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"dns timeout", &cfg.DNSTimeout, defaultDNSTimeout},
		{"connect timeout", &cfg.ConnectTimeout, defaultConnectTimeout},
		{"command timeout", &cfg.CommandTimeout, defaultCommandTimeout},
		{"data timeout", &cfg.DataTimeout, defaultDataTimeout},
	} {
		if *d.v < 0 {
			return cfg, fmt.Errorf("%s %v: must not be negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, r := range cfg.Resolvers {
		if err := checkHostPort(r); err != nil {
			return cfg, fmt.Errorf("resolver %q: %w", r, err)
		}
	}
	for domain, hp := range cfg.Routes {
		if domain == "" || domain != strings.ToLower(domain) || strings.ContainsAny(domain, " \t\r\n@") {
			return cfg, fmt.Errorf("route domain %q: must be a non-empty lowercase domain", domain)
		}
		if err := checkHostPort(hp); err != nil {
			return cfg, fmt.Errorf("route for %s %q: %w", domain, hp, err)
		}
	}
	if cfg.HELO == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		cfg.HELO = h
	}
	if strings.ContainsAny(cfg.HELO, " \t\r\n") {
		return cfg, fmt.Errorf("helo %q: must be one word", cfg.HELO)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("missing host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}
