// Package config reads fanmail's single TOML config file and maps its
// keys onto the configuration of each package. It defines no default of
// its own beyond data_dir and where things live under it: Default shows
// the defaults each package defines once (ingress.DefaultConfig,
// expander.DefaultRecipientsPerEnvelope, queuegroups.DefaultConfig,
// delivery.DefaultConfig) under their keys; Load applies the file, then
// the flags, then Complete (the values derived from others), and
// validates once, naming the bad key; Spool, Routing, DeliveryConfig,
// IngressConfig, AliasConfig and WebConfig map the result back onto each
// package.
// Every key is optional, so fanmail runs with no file at all.
package config

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"fanmail/address"
	"fanmail/delivery"
	"fanmail/expander"
	"fanmail/ingress"
	"fanmail/lists"
	"fanmail/queuegroups"
	"fanmail/web"
)

// Config is the effective configuration of one fanmail instance.
type Config struct {
	Hostname       string `toml:"hostname"`         // EHLO name and Received "by"; default: the OS hostname
	Listen         string `toml:"listen"`           // SMTP listen address
	DataDir        string `toml:"data_dir"`         // holds lists.db and the spool
	MaxMessageSize Size   `toml:"max_message_size"` // SIZE limit for incoming posts
	// MemoryLimit is the server's soft memory limit (Go's GOMEMLIMIT):
	// near it the garbage is collected more often. 0 (the default)
	// derives it from the cap on deliveries in progress
	// (queuegroups.AutoMemoryLimit) and keeps it above twice the live
	// heap (internal/memlimit); a value set here is kept as it is.
	// GOMEMLIMIT in the environment, "off" included, overrides both.
	MemoryLimit Size `toml:"memory_limit"`
	// AdminAddress receives mail to postmaster@ each list domain (RFC
	// 5321 §4.5.1); AbuseAddress, when set, mail to
	// abuse@ each list domain (RFC 2142). Neither is set by default.
	AdminAddress string `toml:"admin_address"`
	AbuseAddress string `toml:"abuse_address"`

	SMTP     SMTP              `toml:"smtp"` // per-session limits of the SMTP server
	Delivery Delivery          `toml:"delivery"`
	Routes   map[string]string `toml:"routes"` // domain → host:port, bypassing DNS
	Queue    Queue             `toml:"queue"`
	Load     LoadControl       `toml:"load"`
	Aliases  Aliases           `toml:"aliases"`
	Metrics  Metrics           `toml:"metrics"`
	TLS      TLS               `toml:"tls"`
	Web      Web               `toml:"web"`   // the one-click unsubscribe endpoint
	Relay    Relay             `toml:"relay"` // peers this node relays for (relay.go)
	Lists    Lists             `toml:"lists"`
	Node     Node              `toml:"node"`
}

// TLS is inbound STARTTLS (RFC 3207).
type TLS struct {
	Cert       string `toml:"cert"`        // PEM certificate chain; with key, STARTTLS is offered
	Key        string `toml:"key"`         // PEM private key
	MinVersion string `toml:"min_version"` // "1.2" or "1.3"
	Required   bool   `toml:"required"`    // refuse MAIL before STARTTLS (530 5.7.0)
}

// tlsVersions are the min_version values.
var tlsVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// MinTLSVersion is min_version as a crypto/tls constant.
func (t TLS) MinTLSVersion() uint16 { return tlsVersions[t.MinVersion] }

// Metrics configures the Prometheus endpoint (package metrics).
type Metrics struct {
	// Listen is the HTTP address serving /metrics and /healthz; "" (the
	// default) serves neither. Bind it to a private address: it tells
	// anyone who asks how busy the server is.
	Listen string `toml:"listen"`
}

// Delivery configures the outbound side.
type Delivery struct {
	Resolvers      []string `toml:"resolvers"` // host:port; empty = /etc/resolv.conf
	Port           int      `toml:"port"`      // port used for MX hosts
	ConnectTimeout Duration `toml:"connect_timeout"`
	CommandTimeout Duration `toml:"command_timeout"`
	DataTimeout    Duration `toml:"data_timeout"`
	FallbackRelay  string   `toml:"fallback_relay"`  // host:port for mail every MX defers (sendmail FallbackMXhost)
	FallbackPolicy string   `toml:"fallback_policy"` // every_attempt, or after_first_attempt for a first-attempt node
	Pipelining     bool     `toml:"pipelining"`      // use PIPELINING when offered (RFC 2920)
	DeliveryLimits          // connection cache, limits, TLS, reply rules (delivery.go)
}

// LoadControl is load control (sendmail QueueLA, DelayLA, RefuseLA,
// MaxDaemonChildren): a threshold of 0 is off, and each is reached when
// the 1-minute load average, or the pending recipients in the spool, is
// at or above it.
type LoadControl struct {
	QueueLA          float64  `toml:"queue_la"`           // accept but only queue
	DelayLA          float64  `toml:"delay_la"`           // sleep delay before MAIL, RCPT, DATA replies
	RefuseLA         float64  `toml:"refuse_la"`          // 421 4.3.2 at connect
	QueueDepthQueue  int      `toml:"queue_depth_queue"`  // as queue_la, by pending recipients
	QueueDepthDelay  int      `toml:"queue_depth_delay"`  // as delay_la
	QueueDepthRefuse int      `toml:"queue_depth_refuse"` // as refuse_la
	MaxSessions      int      `toml:"max_sessions"`       // open SMTP sessions; 421 4.3.2 beyond
	Delay            Duration `toml:"delay"`              // the DelayLA pause per command
	// MaxSessionsPerClient is the open sessions of one IPv4 address or
	// IPv6 /64; 421 4.7.0 beyond.
	MaxSessionsPerClient int `toml:"max_sessions_per_client"`
	// MaxConnectionRatePerClient is the connections one IPv4 address or
	// IPv6 /64 may open per ConnectionRateWindow, refused ones included;
	// 421 4.7.0 beyond; 0 is off.
	MaxConnectionRatePerClient int      `toml:"max_connection_rate_per_client"`
	ConnectionRateWindow       Duration `toml:"connection_rate_window"`
	// ConnectionRateExempt are the addresses and networks never counted
	// ("127.0.0.0/8", "::1"); [relay] peers are never counted either.
	ConnectionRateExempt []string `toml:"connection_rate_exempt"`
}

// Default returns the configuration used when no file is given: the
// defaults that each package defines once (ingress, expander,
// queuegroups and delivery DefaultConfig), mapped onto their keys, and
// data_dir, which is config's own. The hostname is left to Complete.
func Default() Config {
	in, q, d := ingress.DefaultConfig(), queuegroups.DefaultConfig(), delivery.DefaultConfig()
	return Config{
		Listen:         in.Listen,
		DataDir:        "fanmail-data",
		MaxMessageSize: Size(in.MaxMessageSize),
		SMTP:           smtpKeys(in),
		Delivery:       deliveryKeys(d),
		Routes:         map[string]string{},
		Queue: Queue{
			Runners:               q.Groups[0].Runners,
			RecipientsPerEnvelope: expander.DefaultRecipientsPerEnvelope,
			Interval:              Duration(q.Groups[0].Interval),
			DeliveryMode:          q.Mode.String(),
			SuperSafe:             SuperSafe{q.SuperSafe},
			RetryMin:              Duration(q.RetryMin),
			RetryMax:              Duration(q.RetryMax),
			QueueReturn:           Duration(q.QueueReturn),
			QueueWarn:             Duration(q.QueueWarn),
			MoveAsideAfter:        q.MoveAsideAfter,
			SegmentSize:           Size(q.SegmentSize),
		},
		Load: LoadControl{
			QueueLA:              in.Load.QueueLA,
			DelayLA:              in.Load.DelayLA,
			RefuseLA:             in.Load.RefuseLA,
			MaxSessions:          in.Load.MaxSessions,
			MaxSessionsPerClient: in.Load.MaxSessionsPerClient,
			Delay:                Duration(in.Load.Delay),

			MaxConnectionRatePerClient: in.Load.MaxConnectionRatePerClient,
			ConnectionRateWindow:       Duration(in.Load.ConnectionRateWindow),
			ConnectionRateExempt:       peerStrings(in.Load.ConnectionRateExempt),
		},
		Aliases: Aliases{ProgramTimeout: Duration(d.ProgramTimeout)},
		TLS:     TLS{MinVersion: "1.2"},
		Web:     webKeys(web.DefaultConfig()),
	}
}

// Load returns the effective configuration: the defaults, then the file
// at path ("" for none), then each of set (command-line flags), then
// Complete; it is validated once, at the end. The error reports every
// problem at once, one *Problem per line, each naming the file, the line
// and the key; only a syntax error, which ends parsing, comes alone.
func Load(path string, set ...func(*Config)) (Config, error) {
	cfg := Default()
	var problems []error
	var ix *keyIndex
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		if cfg, ix, problems, err = parse(path, data); err != nil {
			return cfg, err
		}
	}
	for _, f := range set {
		f(&cfg)
	}
	cfg.Complete()
	for _, err := range unwrapAll(cfg.Validate()) {
		key, msg, _ := strings.Cut(err.Error(), ": ")
		problems = append(problems, &Problem{File: path, Line: ix.line(key), Key: key, Msg: msg})
	}
	// In file order; problems of keys not in the file (defaults, flags) last.
	slices.SortStableFunc(problems, func(a, b error) int {
		la, lb := a.(*Problem).Line, b.(*Problem).Line
		if (la == 0) != (lb == 0) {
			return cmp.Compare(lb, la)
		}
		return cmp.Compare(la, lb)
	})
	return cfg, errors.Join(problems...)
}

// maxTypeErrors bounds the decoding passes of one file.
const maxTypeErrors = 100

// parse decodes data over the defaults. A syntax error is returned as
// err. A value of the wrong type is a problem, and its key = value is
// blanked and the file decoded again, so that every such value is
// reported, not just the first; the keys no field takes are problems too.
func parse(path string, data []byte) (Config, *keyIndex, []error, error) {
	ix, syntaxErr := indexKeys(data)
	var problems []error
	for {
		cfg := Default()
		md, err := toml.Decode(string(data), &cfg)
		if err == nil {
			for _, k := range md.Undecoded() {
				problems = append(problems, &Problem{File: path, Line: ix.line(k.String()), Key: k.String(),
					Msg: "unknown key (check the spelling against contrib/fanmail.toml.example or `fanmail config check`)"})
			}
			return cfg, ix, problems, nil
		}
		var perr toml.ParseError
		if syntaxErr != nil && errors.As(err, &perr) {
			return cfg, ix, nil, fmt.Errorf("%s:%d: %s", path, perr.Position.Line, perr.Message)
		}
		p := typeProblem(path, ix, err)
		if p == nil {
			return cfg, ix, nil, fmt.Errorf("%s: %w", path, err)
		}
		problems = append(problems, p)
		var ok bool
		if data, ok = ix.blank(data, p.Key); !ok || len(problems) >= maxTypeErrors {
			return cfg, ix, nil, errors.Join(problems...)
		}
	}
}

// unwrapAll returns the errors joined in err, or err alone.
func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Complete fills in what the defaults derive from other settings, once
// the file and the flags are applied: hostname from the OS, the aliases'
// local domains from hostname; and it writes domains in their one form,
// lowercase without a trailing dot, as the packages expect them.
func (c *Config) Complete() {
	if c.Hostname == "" {
		if h, err := os.Hostname(); err == nil {
			c.Hostname = h
		}
	}
	if c.Node.Name == "" {
		c.Node.Name = c.Hostname
	}
	routes := make(map[string]string, len(c.Routes))
	for domain, hostport := range c.Routes {
		routes[strings.ToLower(strings.TrimSuffix(domain, "."))] = hostport
	}
	c.Routes = routes
	a := &c.Aliases
	if len(a.LocalDomains) == 0 && c.Hostname != "" {
		a.LocalDomains = []string{c.Hostname}
	}
	if a.BounceAddress == "" && c.Hostname != "" {
		a.BounceAddress = expander.MailerDaemon(c.Hostname)
	}
	domains := make([]string, len(a.LocalDomains))
	for i, d := range a.LocalDomains {
		domains[i] = strings.ToLower(d)
	}
	a.LocalDomains = domains
}

// Validate rejects impossible values, naming the key. It changes nothing
// and reports every problem, sorted by key.
func (c Config) Validate() error {
	var msgs []string
	bad := func(key, format string, args ...any) {
		msgs = append(msgs, key+": "+fmt.Sprintf(format, args...))
	}
	if c.Hostname == "" {
		bad("hostname", "not set and the OS hostname is unknown; set hostname = \"mail.example.org\"")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port (%v)", c.Listen, err)
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	c.validateCluster(bad)
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls", "give both cert and key (PEM files), or neither")
	}
	if _, ok := tlsVersions[c.TLS.MinVersion]; !ok {
		bad("tls.min_version", "%q is not \"1.2\" or \"1.3\"", c.TLS.MinVersion)
	}
	if c.TLS.Required && c.TLS.Cert == "" {
		bad("tls.required", "needs tls.cert and tls.key")
	}
	for key, a := range map[string]string{"admin_address": c.AdminAddress, "abuse_address": c.AbuseAddress} {
		if a == "" {
			continue
		}
		if _, err := address.Parse(a); err != nil {
			bad(key, "%q: %v", a, err)
		}
	}
	if l := c.Metrics.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			bad("metrics.listen", "%q is not host:port, e.g. \"127.0.0.1:9125\" (or \"\" for no metrics)", l)
		}
	}
	if c.MaxMessageSize <= 0 {
		bad("max_message_size", "must be positive")
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < minMemoryLimit {
		bad("memory_limit", "%d is below 32MB, less than the server itself needs; 0 derives it from max_queue_children", int64(c.MemoryLimit))
	}
	for _, r := range c.Delivery.Resolvers {
		if _, _, err := net.SplitHostPort(r); err != nil {
			bad("delivery.resolvers", "%q is not host:port, e.g. \"127.0.0.1:53\"", r)
		}
	}
	if fr := c.Delivery.FallbackRelay; fr != "" {
		if _, port, err := net.SplitHostPort(fr); err != nil || port == "" {
			bad("delivery.fallback_relay", "%q is not host:port, e.g. \"10.0.0.25:25\"", fr)
		}
	}
	if c.Delivery.Port <= 0 || c.Delivery.Port > 65535 {
		bad("delivery.port", "%d is not a TCP port", c.Delivery.Port)
	}
	positive(bad, "must be a positive duration such as \"30s\" or \"5m\"", map[string]Duration{
		"delivery.connect_timeout": c.Delivery.ConnectTimeout,
		"delivery.command_timeout": c.Delivery.CommandTimeout,
		"delivery.data_timeout":    c.Delivery.DataTimeout,
		"queue.retry_min":          c.Queue.RetryMin,
		"queue.retry_max":          c.Queue.RetryMax,
		"queue.queuereturn":        c.Queue.QueueReturn,
	})
	c.Delivery.DeliveryLimits.validate(bad)
	if c.Queue.RetryMax < c.Queue.RetryMin {
		bad("queue.retry_max", "%v is less than queue.retry_min %v", c.Queue.RetryMax, c.Queue.RetryMin)
	}
	for domain, hostport := range c.Routes {
		if _, port, err := net.SplitHostPort(hostport); err != nil || port == "" {
			bad("routes."+domain, "%q is not host:port, e.g. \"127.0.0.5:2526\"", hostport)
		}
	}
	c.validateQueue(bad)
	c.validateRelay(bad)
	c.SMTP.validate(bad)
	c.Load.validate(bad)
	c.validateAliases(bad)
	c.Web.validate(bad)
	sort.Strings(msgs)
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		errs[i] = errors.New(m)
	}
	return errors.Join(errs...)
}

// atLeast reports, with msg, every key of vals whose value is below
// least: one table for the range checks that share a message.
func atLeast[T ~int | ~int64 | ~float64](bad func(key, format string, args ...any), least T, msg string, vals map[string]T) {
	for key, v := range vals {
		if v < least {
			bad(key, "%s", msg)
		}
	}
}

// positive reports, with msg, every key of vals whose value is not
// above zero.
func positive[T ~int | ~int64 | ~float64](bad func(key, format string, args ...any), msg string, vals map[string]T) {
	for key, v := range vals {
		if v <= 0 {
			bad(key, "%s", msg)
		}
	}
}

func (l LoadControl) validate(bad func(key, format string, args ...any)) {
	atLeast(bad, 0, "must not be negative (0 turns it off)", map[string]float64{
		"load.queue_la":           l.QueueLA,
		"load.delay_la":           l.DelayLA,
		"load.refuse_la":          l.RefuseLA,
		"load.queue_depth_queue":  float64(l.QueueDepthQueue),
		"load.queue_depth_delay":  float64(l.QueueDepthDelay),
		"load.queue_depth_refuse": float64(l.QueueDepthRefuse),
	})
	atLeast(bad, 1, "must be at least 1; sessions are never unlimited", map[string]int{
		"load.max_sessions":            l.MaxSessions,
		"load.max_sessions_per_client": l.MaxSessionsPerClient,
	})
	if l.MaxConnectionRatePerClient < 0 {
		bad("load.max_connection_rate_per_client", "must not be negative (0 turns it off; Postfix operators use 30 to 60 a minute)")
	}
	if l.ConnectionRateWindow < Duration(time.Second) {
		bad("load.connection_rate_window", "%v is below 1s; give a duration such as \"60s\" (Postfix anvil_rate_time_unit)", l.ConnectionRateWindow)
	}
	for _, p := range l.ConnectionRateExempt {
		if _, err := parsePeer(p); err != nil {
			bad("load.connection_rate_exempt", "%q is not an address or network such as \"127.0.0.0/8\" or \"::1\"", p)
		}
	}
	// Refusing below the queueing threshold would skip the gentler step
	// (sendmail TUNING: RefuseLA above QueueLA).
	if l.RefuseLA > 0 && l.QueueLA > 0 && l.RefuseLA < l.QueueLA {
		bad("load.refuse_la", "%v is below load.queue_la %v (defaults: 12 and 8 per CPU)", l.RefuseLA, l.QueueLA)
	}
	if l.QueueDepthRefuse > 0 && l.QueueDepthQueue > 0 && l.QueueDepthRefuse < l.QueueDepthQueue {
		bad("load.queue_depth_refuse", "%d is below load.queue_depth_queue %d", l.QueueDepthRefuse, l.QueueDepthQueue)
	}
	if l.Delay < 0 {
		bad("load.delay", "must not be negative")
	} else if l.Delay == 0 && (l.DelayLA > 0 || l.QueueDepthDelay > 0) {
		bad("load.delay", "must be positive when load.delay_la or load.queue_depth_delay is set, e.g. \"1s\"")
	}
}

// Warnings are what a valid config had better change, for config check.
func (c Config) Warnings() []string {
	var w []string
	if c.AdminAddress == "" {
		w = append(w, "admin_address is not set: mail to postmaster@ each list domain is refused, "+
			"although RFC 5321 §4.5.1 requires it to be accepted; set admin_address = \"you@example.org\"")
	}
	return w
}

// IngressConfig maps listen, hostname, max_message_size, [smtp] and
// [load] onto the SMTP listener's Config; queueDepth counts the spool's
// pending recipients for the queue_depth_* thresholds. The directories
// whose free space min_free_space watches are the caller's to add
// (Load.Spool): they are the spool's.
func (c *Config) IngressConfig(log *slog.Logger, queueDepth func() int) ingress.Config {
	l, s := c.Load, c.SMTP
	return ingress.Config{
		Listen:             c.Listen,
		Hostname:           c.Hostname,
		MaxMessageSize:     int64(c.MaxMessageSize),
		MaxRecipients:      s.MaxRecipients,
		RecipientOvershoot: s.RecipientOvershoot,
		MaxErrors:          s.MaxErrors,
		MaxJunkCommands:    s.MaxJunkCommands,
		ReadTimeout:        s.CommandTimeout.D(),
		WriteTimeout:       s.CommandTimeout.D(),
		SessionTimeout:     s.SessionTimeout.D(),
		Peers:              c.RelayPeers(),
		Load: ingress.Load{
			QueueLA:              l.QueueLA,
			DelayLA:              l.DelayLA,
			RefuseLA:             l.RefuseLA,
			QueueDepthQueue:      l.QueueDepthQueue,
			QueueDepthDelay:      l.QueueDepthDelay,
			QueueDepthRefuse:     l.QueueDepthRefuse,
			MaxSessions:          l.MaxSessions,
			MaxSessionsPerClient: l.MaxSessionsPerClient,
			Delay:                l.Delay.D(),
			QueueDepth:           queueDepth,
			MinFreeSpace:         int64(s.MinFreeSpace),

			MaxConnectionRatePerClient: l.MaxConnectionRatePerClient,
			ConnectionRateWindow:       l.ConnectionRateWindow.D(),
			ConnectionRateExempt:       parsePeers(l.ConnectionRateExempt),
		},
		Logger: log,
	}
}

// AdminSocket is the unix socket the queue tools reach a running server on.
func (c *Config) AdminSocket() string { return filepath.Join(c.DataDir, "control.sock") }

// Duration is a time.Duration written as "30s", "5m" or "4h" in the file.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"30s\" or \"5m\"", b)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d Duration) String() string { return time.Duration(d).String() }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// minMemoryLimit is the least memory_limit accepted: below it the
// collector would run without pause on the server's own state.
const minMemoryLimit = 32 << 20

// Size is a byte count written as 1048576, "25MB" or "512KB".
type Size int64

func (s *Size) UnmarshalText(b []byte) error {
	str := strings.ToUpper(strings.TrimSpace(string(b)))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(str, u.suffix) {
			str, mult = strings.TrimSpace(strings.TrimSuffix(str, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a size such as 26214400 or \"25MB\"", b)
	}
	*s = Size(n * mult)
	return nil
}

func (s Size) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }

// String renders the effective config as TOML, for `fanmail config check`.
func (c Config) String() string {
	c.Lists.Database = lists.Describe(c.Lists.Database)
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		return fmt.Sprintf("# cannot render config: %v\n", err)
	}
	return b.String()
}
