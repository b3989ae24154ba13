package delivery

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"fanmail/delivery/local"
	"fanmail/envelope"
	"fanmail/resolver"
)

// Config configures an Agent. Zero fields take the values of DefaultConfig.
type Config struct {
	// Resolvers are DNS servers as host:port, tried in order. Empty means
	// the nameservers of ResolvConf.
	Resolvers []string
	// ResolvConf is read when Resolvers is empty; default /etc/resolv.conf.
	ResolvConf string
	// DNSTimeout bounds each DNS query (UDP, or the TCP retry); default 5s.
	DNSTimeout time.Duration
	// Resolver, when set, is the resolver to use, shared with the rest
	// of the process (the DMARC check): Resolvers, ResolvConf and
	// DNSTimeout are then only what NewResolver opened it from. Nil
	// makes New open one of its own, which Close closes.
	Resolver *resolver.Resolver
	// Personalizer makes each member's sender and header fields for the
	// envelopes of lists that personalize (envelope.Personal); package
	// render has the one fanmail uses. Nil defers such envelopes.
	Personalizer envelope.Personalizer
	// Port is the SMTP port used for MX hosts; default 25. Tests point it
	// at their sinks, which all listen on one port on different 127.x IPs.
	Port int
	// Routes maps a lowercase domain to a fixed "host:port", bypassing MX
	// lookups for that domain (exact match, no subdomains). Use an IP: a
	// host name here is resolved by the operating system, not Resolvers.
	Routes map[string]string
	// FallbackRelay is sendmail's FallbackMXhost: a "host:port" that gets
	// the recipients every MX of their domain deferred (not those
	// deferred because their destination was busy or suspended) in the
	// same attempt. Empty means none.
	FallbackRelay string
	// FallbackPolicy says what the FallbackRelay gets (fallback.go);
	// default FallbackEveryAttempt.
	FallbackPolicy FallbackPolicy
	// ClientCert, when set, is the certificate a connection to the
	// FallbackRelay presents if the relay asks for one.
	ClientCert func() (*tls.Certificate, error)
	// NoPipelining keeps to the lock-step dialogue even with servers that
	// offer PIPELINING, like Postfix's smtp_discard_ehlo_keywords =
	// pipelining: for a receiver whose pipelining is broken, and for
	// measuring what pipelining gains.
	NoPipelining bool
	// ProgramTimeout bounds a |program run or a /file append for the
	// local targets of aliases files; default 5m.
	ProgramTimeout time.Duration
	// ProgramCred is who |programs run as and who owns files created for
	// /file targets; nil means the server's own user.
	ProgramCred *local.Credentials
	// HELO is the name given in EHLO/HELO; default os.Hostname().
	HELO string
	// Sources are egress address pools by queue group name (sources.go):
	// a group's connections leave from its pool's addresses in turn,
	// each giving its own HELO; a group without one leaves from the
	// default address with HELO.
	Sources map[string]SourcePool
	// ConnectTimeout bounds the TCP connect; default 30s. RFC 5321 only
	// covers the greeting (5m), far too long to wait on a dead host.
	ConnectTimeout time.Duration
	// ConnectTimeoutMin is the connect timeout for a destination no
	// connection has reached yet, unless four times the slowest of the
	// last connects that succeeded is longer (never beyond
	// ConnectTimeout); default 5s. A host that never answers a SYN (a
	// black hole) is found dead that soon; its retry after the
	// suspension waits the full ConnectTimeout, in case it was only slow.
	ConnectTimeoutMin time.Duration
	// CommandTimeout bounds the greeting and each command's reply; default
	// 5m (RFC 5321 §4.5.3.2.1-5).
	CommandTimeout time.Duration
	// DataTimeout bounds sending the body and waiting for the reply to the
	// final dot; default 10m (RFC 5321 §4.5.3.2.6).
	DataTimeout time.Duration
	// Logger receives one line per recipient attempt; default discards.
	Logger *slog.Logger

	// Connection cache (sendmail's ConnectionCacheSize/Timeout, Postfix's
	// smtp_connection_cache_*), shared by every Deliver call.
	//
	// ConnCacheSize caps idle connections kept across all destinations;
	// default 100, negative disables the cache.
	ConnCacheSize int
	// ConnIdleTimeout closes a cached connection idle this long; default 5s
	// (Postfix waits 2s, sendmail 5m: servers drop idle clients).
	ConnIdleTimeout time.Duration
	// ConnMaxAge stops reusing a connection this old; default 5m (Postfix's
	// smtp_connection_reuse_time_limit).
	ConnMaxAge time.Duration

	// Limits per MX group (destinations whose MX hosts are the same),
	// overridable per domain or MX host by Destinations.
	//
	// MaxConns caps connections open at once to one MX group; default
	// 10. The big providers refuse an address that opens more than about
	// ten sessions at once (421 at the greeting, and some block it for a
	// while), and a cap is only learned by going past it, so the default
	// stays at or under the limits met in practice; a Destination raises
	// it for a receiver known to take more. A 421 at the greeting while
	// others are open lowers it for that group (learned, see doc.go).
	MaxConns int
	// InitialConcurrency is where the adaptive window starts once the
	// group has answered a connect; default 5.
	InitialConcurrency int
	// RcptsPerTxn caps recipients per mail transaction; default 100, the
	// number RFC 5321 §4.5.3.1.8 obliges every server to accept. A
	// larger envelope takes several transactions, on one connection when
	// it can; a 452 for too many recipients sends the rest in the next
	// transaction at once and lowers the cap for that group.
	RcptsPerTxn int
	// TxnsPerConn caps transactions per connection; default 100. A 421
	// to a later transaction on a connection lowers it for that group.
	TxnsPerConn int
	// RateDelay spaces transaction starts to one MX group; default 0.
	RateDelay time.Duration
	// SlotWait is how long Deliver waits for a connection slot of a busy
	// MX group before deferring with 4.4.5 and a short RetryAfter; default
	// 30s. The queue admits only about twice the group's window of
	// deliveries at once (Slots), so the wait is for a connection to come
	// free, not behind a crowd.
	SlotWait time.Duration
	// DeadAfter consecutive failed sessions at a window of 1 suspend the
	// MX group for DeadSuspend; defaults 5 and 1m. A connect or greeting
	// that times out suspends it at once. Each suspension in a row
	// doubles, up to 32 × DeadSuspend.
	DeadAfter   int
	DeadSuspend time.Duration
	// ThrottlePause is how long new connections to an MX group wait
	// after a 421 that is not a learned limit (the server is shedding
	// load); it doubles with each such 421 in a row up to
	// ThrottlePauseMax and clears with the next transaction that works.
	// The recipients are tried again within the same delivery, on the
	// connections the group still accepts, and only after three tries
	// deferred with RetryAfter set to the pause left. Defaults 1s and 1m.
	ThrottlePause    time.Duration
	ThrottlePauseMax time.Duration
	// GreylistRetry is when a greylisted recipient (a 4xx whose text
	// says greylisting, or a 450/451 4.7.1 to a first attempt) is first
	// tried again, counted from its first greylisting; later tries
	// double the offset (40s, 80s, 160s, ...) until GreylistRetryMax,
	// after which the queue's own backoff takes over. A wait the reply
	// names ("try again in 300 seconds") is used instead, and once a
	// group has let a greylisted recipient through, later ones of the
	// group are tried again at that offset (see greylist.go). Defaults
	// 40s and 30m.
	GreylistRetry    time.Duration
	GreylistRetryMax time.Duration
	// Destinations override limits and TLS per domain or MX host
	// pattern; the first match wins.
	Destinations []Destination
	// ReplyRules map replies to actions on the MX group; nil means
	// DefaultReplyRules, an empty non-nil slice means none.
	ReplyRules []ReplyRule

	// TLS is the outbound STARTTLS mode; default opportunistic.
	TLS TLSMode
	// TLSRootCAs verifies certificates under TLSRequired; nil means the
	// system pool.
	TLSRootCAs *x509.CertPool
}

// DefaultConfig is the agent's configuration when nothing is set: every
// default in one place. New fills a zero field of its Config from here;
// package config shows these values as the [delivery] defaults.
func DefaultConfig() Config {
	return Config{
		ResolvConf:     "/etc/resolv.conf",
		DNSTimeout:     5 * time.Second,
		Port:           25,
		FallbackPolicy: FallbackEveryAttempt,
		ProgramTimeout: 5 * time.Minute,
		ConnectTimeout: 30 * time.Second,
		CommandTimeout: 5 * time.Minute,

		ConnectTimeoutMin: 5 * time.Second,
		DataTimeout:       10 * time.Minute,

		ConnCacheSize:   100,
		ConnIdleTimeout: 5 * time.Second,
		ConnMaxAge:      5 * time.Minute,

		MaxConns:           10,
		InitialConcurrency: 5,
		RcptsPerTxn:        100,
		TxnsPerConn:        100,
		SlotWait:           30 * time.Second,
		DeadAfter:          5,
		DeadSuspend:        time.Minute,
		ThrottlePause:      time.Second,
		ThrottlePauseMax:   time.Minute,
		GreylistRetry:      40 * time.Second,
		GreylistRetryMax:   30 * time.Minute,
		TLS:                TLSOpportunistic,
	}
}

// withDefaults returns cfg with every zero field set to its default and
// checks what is left; it never modifies the caller's maps or slices.
func (cfg Config) withDefaults() (Config, error) {
	def := DefaultConfig()
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = def.ResolvConf
	}
	if cfg.Port == 0 {
		cfg.Port = def.Port
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return cfg, fmt.Errorf("port %d: out of range 1-65535", cfg.Port)
	}
	for _, err := range []error{
		orDefault("dns timeout", &cfg.DNSTimeout, def.DNSTimeout),
		orDefault("connect timeout", &cfg.ConnectTimeout, def.ConnectTimeout),
		orDefault("connect timeout min", &cfg.ConnectTimeoutMin, def.ConnectTimeoutMin),
		orDefault("command timeout", &cfg.CommandTimeout, def.CommandTimeout),
		orDefault("data timeout", &cfg.DataTimeout, def.DataTimeout),
		orDefault("connection idle timeout", &cfg.ConnIdleTimeout, def.ConnIdleTimeout),
		orDefault("connection max age", &cfg.ConnMaxAge, def.ConnMaxAge),
		orDefault("rate delay", &cfg.RateDelay, def.RateDelay),
		orDefault("slot wait", &cfg.SlotWait, def.SlotWait),
		orDefault("dead suspend", &cfg.DeadSuspend, def.DeadSuspend),
		orDefault("max conns", &cfg.MaxConns, def.MaxConns),
		orDefault("initial concurrency", &cfg.InitialConcurrency, def.InitialConcurrency),
		orDefault("recipients per transaction", &cfg.RcptsPerTxn, def.RcptsPerTxn),
		orDefault("transactions per connection", &cfg.TxnsPerConn, def.TxnsPerConn),
		orDefault("dead after", &cfg.DeadAfter, def.DeadAfter),
		orDefault("throttle pause", &cfg.ThrottlePause, def.ThrottlePause),
		orDefault("throttle pause max", &cfg.ThrottlePauseMax, def.ThrottlePauseMax),
		orDefault("greylist retry", &cfg.GreylistRetry, def.GreylistRetry),
		orDefault("greylist retry max", &cfg.GreylistRetryMax, def.GreylistRetryMax),
	} {
		if err != nil {
			return cfg, err // the first, in this order
		}
	}
	if err := cfg.limitDefaults(def); err != nil {
		return cfg, err
	}
	for _, r := range cfg.Resolvers {
		if err := checkHostPort(r); err != nil {
			return cfg, fmt.Errorf("resolver %q: %w", r, err)
		}
	}
	if cfg.ProgramTimeout <= 0 {
		cfg.ProgramTimeout = def.ProgramTimeout
	}
	if cfg.FallbackRelay != "" {
		if err := checkHostPort(cfg.FallbackRelay); err != nil {
			return cfg, fmt.Errorf("fallback relay %q: %w", cfg.FallbackRelay, err)
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
	if err := checkSources(&cfg); err != nil {
		return cfg, err
	}
	if err := checkFallback(&cfg); err != nil {
		return cfg, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// orDefault sets a zero *v to def and refuses a negative one.
func orDefault[T int | time.Duration](name string, v *T, def T) error {
	if *v < 0 {
		return fmt.Errorf("%s %v: must not be negative", name, *v)
	}
	if *v == 0 {
		*v = def
	}
	return nil
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

// limitDefaults fills in and checks the connection cache, TLS,
// destination and reply rule settings.
func (cfg *Config) limitDefaults(def Config) error {
	if cfg.ConnCacheSize == 0 {
		cfg.ConnCacheSize = def.ConnCacheSize
	}
	if cfg.InitialConcurrency > cfg.MaxConns {
		cfg.InitialConcurrency = cfg.MaxConns
	}
	if cfg.ConnectTimeoutMin > cfg.ConnectTimeout {
		cfg.ConnectTimeoutMin = cfg.ConnectTimeout
	}
	if cfg.ThrottlePauseMax < cfg.ThrottlePause {
		return fmt.Errorf("throttle pause max %v: less than throttle pause %v", cfg.ThrottlePauseMax, cfg.ThrottlePause)
	}
	if cfg.GreylistRetryMax < cfg.GreylistRetry {
		return fmt.Errorf("greylist retry max %v: less than greylist retry %v", cfg.GreylistRetryMax, cfg.GreylistRetry)
	}
	if cfg.TLS == "" {
		cfg.TLS = def.TLS
	}
	if !cfg.TLS.valid() {
		return fmt.Errorf("tls %q: must be opportunistic, required or none", cfg.TLS)
	}
	for _, d := range cfg.Destinations {
		m := strings.TrimPrefix(strings.TrimPrefix(d.Match, "*"), ".")
		if m == "" || strings.ContainsAny(m, " \t@*") {
			return fmt.Errorf("destination %q: match must be a domain, *.domain or .domain", d.Match)
		}
		if d.MaxConns < 0 || d.RcptsPerTxn < 0 || d.TxnsPerConn < 0 || d.RateDelay < 0 {
			return fmt.Errorf("destination %q: limits must not be negative", d.Match)
		}
		if d.TLS != "" && !d.TLS.valid() {
			return fmt.Errorf("destination %q: tls %q: must be opportunistic, required or none", d.Match, d.TLS)
		}
	}
	if cfg.ReplyRules == nil {
		cfg.ReplyRules = DefaultReplyRules
	}
	for _, r := range cfg.ReplyRules {
		if err := r.check(); err != nil {
			return err
		}
	}
	return nil
}
