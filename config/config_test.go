package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"fanmail/delivery"
	"fanmail/expander"
	"fanmail/ingress"
	"fanmail/queuegroups"
)

func load(t *testing.T, text string) (Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fanmail.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

// mustLoad loads the config text, failing the test if it is rejected.
func mustLoad(t *testing.T, text string) Config {
	t.Helper()
	cfg, err := load(t, text)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// wantRejected fails the test unless the config text is rejected with an
// error containing want.
func wantRejected(t *testing.T, text, want string) {
	t.Helper()
	_, err := load(t, text)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%q: error %v, want one containing %q", text, err, want)
	}
}

func TestDefaultsAreValid(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.Listen != "127.0.0.1:2525" || cfg.DataDir != "fanmail-data" || cfg.Queue.SuperSafe.V != queuegroups.SafeTrue ||
		cfg.Queue.RecipientsPerEnvelope != 100 || cfg.MaxMessageSize != 25<<20 || cfg.Hostname == "" {
		t.Errorf("unexpected defaults: %+v", cfg)
	}
}

func TestLoadControlDefaults(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	n := float64(runtime.NumCPU())
	want := LoadControl{QueueLA: 8 * n, RefuseLA: 12 * n, Delay: Duration(time.Second), MaxSessions: 500, MaxSessionsPerClient: 20,
		MaxConnectionRatePerClient: 120, ConnectionRateWindow: Duration(time.Minute), ConnectionRateExempt: []string{"127.0.0.0/8", "::1"}}
	if diff := cmp.Diff(want, cfg.Load); diff != "" {
		t.Errorf("load defaults (sendmail's QueueLA and RefuseLA per CPU, depth off, sessions and their rate capped, the host exempt) (-want +got):\n%s", diff)
	}
}

func TestLoadControlOverrides(t *testing.T) {
	cfg := mustLoad(t, `
[load]
queue_la = 6
delay_la = 4.5
refuse_la = 0
queue_depth_queue = 10000
queue_depth_delay = 20000
queue_depth_refuse = 50000
max_sessions = 200
max_sessions_per_client = 5
delay = "250ms"
max_connection_rate_per_client = 0
connection_rate_window = "10m"
connection_rate_exempt = []
`)
	want := LoadControl{QueueLA: 6, DelayLA: 4.5, QueueDepthQueue: 10000, QueueDepthDelay: 20000,
		QueueDepthRefuse: 50000, MaxSessions: 200, MaxSessionsPerClient: 5, Delay: Duration(250 * time.Millisecond),
		ConnectionRateWindow: Duration(10 * time.Minute), ConnectionRateExempt: []string{}}
	if diff := cmp.Diff(want, cfg.Load); diff != "" {
		t.Errorf("load (-want +got):\n%s", diff)
	}
	// A refuse threshold of 0 is off, so it does not have to exceed queue_la.
	if _, err := load(t, "[load]\nqueue_la = 50\nrefuse_la = 0"); err != nil {
		t.Errorf("refuse_la off with queue_la set: %v", err)
	}
}

// The connection-rate keys reach ingress as they are written; the
// relay peers travel as Peers, which ingress exempts as well.
func TestConnectionRateMapping(t *testing.T) {
	cfg := mustLoad(t, `
[load]
max_connection_rate_per_client = 30
connection_rate_window = "2m"
connection_rate_exempt = ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]
[relay]
peers = ["192.0.2.7"]
`)
	in := cfg.IngressConfig(nil, nil)
	got := []any{in.Load.MaxConnectionRatePerClient, in.Load.ConnectionRateWindow, in.Load.ConnectionRateExempt, in.Peers.Networks}
	want := []any{30, 2 * time.Minute,
		[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("ingress config (-want +got):\n%s", diff)
	}
}

func TestSMTPLimits(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	want := SMTP{MaxRecipients: 1000, RecipientOvershoot: 1000, MaxErrors: 20, MaxJunkCommands: 100,
		CommandTimeout: Duration(5 * time.Minute), SessionTimeout: Duration(30 * time.Minute), MinFreeSpace: 100 << 20}
	if diff := cmp.Diff(want, cfg.SMTP); diff != "" {
		t.Errorf("[smtp] defaults (-want +got):\n%s", diff)
	}
	if cfg.Aliases.BounceAddress != "MAILER-DAEMON@"+cfg.Hostname {
		t.Errorf("aliases.bounce_address default %q, want MAILER-DAEMON@hostname", cfg.Aliases.BounceAddress)
	}
	cfg = mustLoad(t, `hostname = "mx.example.org"
[smtp]
max_recipients = 200
recipient_overshoot = 10
max_errors = 5
max_junk_commands = 7
command_timeout = "1m"
session_timeout = "2m"
min_free_space = "1GB"
[load]
max_sessions = 50
max_sessions_per_client = 3
[aliases]
bounce_address = "postmaster@example.org"
`)
	in := cfg.IngressConfig(nil, nil)
	got := []any{in.MaxRecipients, in.RecipientOvershoot, in.MaxErrors, in.MaxJunkCommands, in.ReadTimeout, in.WriteTimeout,
		in.SessionTimeout, in.Load.MinFreeSpace, in.Load.MaxSessions, in.Load.MaxSessionsPerClient}
	wantIn := []any{200, 10, 5, 7, time.Minute, time.Minute, 2 * time.Minute, int64(1 << 30), 50, 3}
	if diff := cmp.Diff(wantIn, got); diff != "" {
		t.Errorf("ingress config (-want +got):\n%s", diff)
	}
	if ac := cfg.AliasConfig(nil, nil); ac.BounceAddress != "postmaster@example.org" {
		t.Errorf("alias bounce address %q", ac.BounceAddress)
	}
}

func TestLoadOverridesDefaults(t *testing.T) {
	cfg := mustLoad(t, `
hostname = "mail.example.org"
max_message_size = "10MB"
[delivery]
resolvers = ["127.0.0.1:5353"]
port = 2526
[routes]
"Example.TEST." = "127.0.0.5:2526"
[queue]
recipients_per_envelope = 50
retry_min = "1m"
supersafe = "interactive"
delivery_mode = "interactive"
`)
	if cfg.Hostname != "mail.example.org" || cfg.MaxMessageSize != 10<<20 || cfg.Delivery.Port != 2526 ||
		cfg.Queue.RecipientsPerEnvelope != 50 || cfg.Queue.RetryMin.D() != time.Minute ||
		cfg.Queue.SuperSafe.V != queuegroups.SafeInteractive || cfg.Queue.DeliveryMode != "interactive" {
		t.Errorf("file not applied: %+v", cfg)
	}
	if cfg.Routes["example.test"] != "127.0.0.5:2526" {
		t.Errorf("route domains are not normalised: %v", cfg.Routes)
	}
	if cfg.Listen != "127.0.0.1:2525" {
		t.Errorf("unset key lost its default: listen = %q", cfg.Listen)
	}
}

// Every rejected config names the key (or line) and says what is wrong.
func TestBadConfigs(t *testing.T) {
	tests := []struct{ text, want string }{
		{`listen = "2525"`, `listen: "2525" is not host:port`},
		{`lisen = "127.0.0.1:25"`, "fanmail.toml:1: lisen: unknown key"},
		{"[queue]\nrunner = 4", "fanmail.toml:2: queue.runner: unknown key"},
		{`max_message_size = "lots"`, `"lots" is not a size`},
		{`max_message_size = 0`, "max_message_size: must be positive"},
		{`memory_limit = "16MB"`, "memory_limit: 16777216 is below 32MB"},
		{"[delivery]\nport = 70000", "delivery.port: 70000 is not a TCP port"},
		{"[delivery]\nresolvers = [\"127.0.0.1\"]", `delivery.resolvers: "127.0.0.1" is not host:port`},
		{"[delivery]\nconnect_timeout = \"soon\"", `"soon" is not a duration`},
		{"[delivery]\ncommand_timeout = \"-1s\"", "delivery.command_timeout: must be a positive duration"},
		{"[queue]\nretry_min = \"2h\"\nretry_max = \"1h\"", "queue.retry_max: 1h0m0s is less than queue.retry_min 2h0m0s"},
		{"[queue]\nrunners = 0", "queue.runners: must be at least 1"},
		{"[queue]\nrecipients_per_envelope = -1", "queue.recipients_per_envelope: must be at least 1"},
		{"[routes]\n\"example.test\" = \"127.0.0.5\"", `routes.example.test: "127.0.0.5" is not host:port`},
		{"data_dir = \"\"", "data_dir: must not be empty"},
		{"[delivery]\nfallback_relay = \"relay.example\"", `delivery.fallback_relay: "relay.example" is not host:port`},
		{"listen = \n", "fanmail.toml:1:"},
		{"[queue]\nsupersafe = \"maybe\"", `supersafe: maybe is not true, false or "interactive"`},
		{"[queue]\ndelivery_mode = \"deferred\"", `queue.delivery_mode: "deferred" is not a delivery mode`},
		{"[queue]\nmax_queue_children = -1", "queue.max_queue_children: must be 0"},
		{"[queue]\nmove_aside_after = 0", "queue.move_aside_after: must be at least 1"},
		{"[queue]\nsegment_size = \"1KB\"", "queue.segment_size: must be at least"},
		{"[[queue.group]]\nname = \"big\"", "queue.group big: needs path"},
		{"[[queue.group]]\nname = \"b g\"\npath = \"q\"", `queue group "b g": names are letters`},
		{"[[queue.group]]\nname = \"big\"\npath = \"/nonexistent/q*\"", `path "/nonexistent/q*" matches no directory`},
		{"[[queue.group]]\nname = \"a\"\npath = \"q\"\n[[queue.group]]\nname = \"b\"\npath = \"q\"", "share directory"},
		{"[[queue.group]]\nname = \"a\"\npath = \"q\"\n[[queue.group]]\nname = \"a\"\npath = \"r\"", "declared twice"},
		{"[[queue.rule]]\ndomains = [\"gmail.com\"]\ngroup = \"nope\"", `names queue group "nope", which is not declared`},
		{"[[queue.rule]]\ndomains = [\"gmail.com\"]\ngroup = \"control\"", "the control group is for mail fanmail generates"},
		{"[[queue.rule]]\ndomains = [\"*gmail.com\"]\ngroup = \"default\"", `domain pattern "*gmail.com"`},
		{"[[queue.rule]]\ngroup = \"default\"", "queue.rule[0]: needs domains"},
		{"[[queue.group]]\nname = \"big\"\npath = \"q\"\nrunners = -1", "must not be negative"},
		{"[[queue.group]]\nname = \"default\"\nsource_addresses = [{ address = \"198.51.100\" }]", `queue.group default.source_addresses: "198.51.100" is not an IP address`},
		{"[[queue.group]]\nname = \"default\"\nsource_addresses = [{ address = \"0.0.0.0\" }]", "0.0.0.0 is not a unicast address"},
		{"[[queue.group]]\nname = \"default\"\nsource_addresses = [{ address = \"127.0.0.2\" }, { address = \"127.0.0.2\" }]", "127.0.0.2 is listed twice"},
		{"[[queue.group]]\nname = \"default\"\nsource_addresses = [{ address = \"127.0.0.2\", helo = \"a b\" }]", `helo "a b" of 127.0.0.2 must be one word`},
		{"[[queue.group]]\nname = \"default\"\nsource_addresses = [{ addr = \"127.0.0.2\" }]", "source_addresses.addr: unknown key"},
		{"[[queue.group]]\nname = \"default\"\nsource_addresses = [\"127.0.0.2\"]", "source_addresses"},
		{"[[queue.group]]\nname = \"default\"\nsource_max_connections = 5", "source_max_connections: needs source_addresses"},
		{"[[queue.group]]\nname = \"default\"\nsource_addresses = [{ address = \"127.0.0.2\" }]\nsource_max_connections = -1", "source_max_connections: must be 0"},
		{"[load]\nqueue_la = -1", "load.queue_la: must not be negative"},
		{"[load]\ndelay_la = -0.5", "load.delay_la: must not be negative"},
		{"[load]\nrefuse_la = -2", "load.refuse_la: must not be negative"},
		{"[load]\nqueue_depth_queue = -1", "load.queue_depth_queue: must not be negative"},
		{"[load]\nqueue_depth_delay = -1", "load.queue_depth_delay: must not be negative"},
		{"[load]\nqueue_depth_refuse = -1", "load.queue_depth_refuse: must not be negative"},
		{"[load]\nmax_sessions = -1", "load.max_sessions: must be at least 1"},
		{"[load]\nmax_sessions = 0", "load.max_sessions: must be at least 1; sessions are never unlimited"},
		{"[load]\nmax_sessions_per_client = 0", "load.max_sessions_per_client: must be at least 1"},
		{"[load]\nmax_sessions_per_client = \"many\"", "max_sessions_per_client"},
		{"[load]\nmax_connection_rate_per_client = -1", "load.max_connection_rate_per_client: must not be negative (0 turns it off"},
		{"[load]\nmax_connection_rate_per_client = \"60/min\"", "max_connection_rate_per_client"},
		{"[load]\nconnection_rate_window = \"0s\"", `load.connection_rate_window: 0s is below 1s; give a duration such as "60s"`},
		{"[load]\nconnection_rate_window = \"500ms\"", "load.connection_rate_window: 500ms is below 1s"},
		{"[load]\nconnection_rate_window = \"a minute\"", "connection_rate_window"},
		{"[load]\nconnection_rate_exempt = [\"localhost\"]", `load.connection_rate_exempt: "localhost" is not an address or network such as "127.0.0.0/8"`},
		{"[load]\nconnection_rate_exempt = [\"10.0.0.0/33\"]", `load.connection_rate_exempt: "10.0.0.0/33" is not an address or network`},
		{"[load]\nconnection_rate_exempt = \"127.0.0.1\"", "connection_rate_exempt"},
		{"[smtp]\nmax_recipients = 99", "smtp.max_recipients: 99 is below the 100 recipients RFC 5321 requires"},
		{"[smtp]\nrecipient_overshoot = 0", "smtp.recipient_overshoot: must be at least 1"},
		{"[smtp]\nmax_errors = 0", "smtp.max_errors: must be at least 1"},
		{"[smtp]\nmax_junk_commands = -5", "smtp.max_junk_commands: must be at least 1"},
		{"[smtp]\ncommand_timeout = \"0s\"", "smtp.command_timeout: must be a positive duration"},
		{"[smtp]\nsession_timeout = \"-1m\"", "smtp.session_timeout: must be a positive duration"},
		{"[smtp]\ncommand_timeout = \"10m\"\nsession_timeout = \"5m\"", "smtp.session_timeout: 5m0s is shorter than smtp.command_timeout 10m0s"},
		{"[smtp]\nmin_free_space = \"-1MB\"", `"-1MB" is not a size`},
		{"[smtp]\nmax_sessions = 5", "smtp.max_sessions: unknown key"},
		{"[aliases]\nbounce_address = \"MAILER-DAEMON\"", `aliases.bounce_address: "MAILER-DAEMON" is not an address`},
		{"[aliases]\nbounce_address = \"<>\"", `aliases.bounce_address: "<>" is not an address`},
		{"[load]\nqueue_la = 20\nrefuse_la = 10", "load.refuse_la: 10 is below load.queue_la 20"},
		{"[load]\nqueue_depth_queue = 5000\nqueue_depth_refuse = 1000", "load.queue_depth_refuse: 1000 is below load.queue_depth_queue 5000"},
		{"[load]\ndelay = \"-1s\"", "load.delay: must not be negative"},
		{"[load]\ndelay_la = 4\ndelay = \"0s\"", "load.delay: must be positive when load.delay_la"},
		{"[load]\ndelay = \"a while\"", `"a while" is not a duration`},
		{"[load]\nmax_session = 10", "fanmail.toml:2: load.max_session: unknown key"},
		{"[metrics]\nlisten = \"9125\"", `metrics.listen: "9125" is not host:port`},
		{"[relay]\npeers = [\"10.1.0.0/33\"]", `relay.peers: "10.1.0.0/33" is not an address or network`},
		{"[relay]\npeers = [\"first.example.org\"]", `relay.peers: "first.example.org" is not an address`},
		{"[relay]\npeer_certs = [\"ab:cd\"]", `relay.peer_certs: "ab:cd" is not a SHA-256 fingerprint`},
		{"[relay]\npeer_certs = [\"" + strings.Repeat("ab", 32) + "\"]", "relay.peer_certs: needs tls.cert and tls.key"},
		{"[delivery]\nfallback_policy = \"sometimes\"", `delivery.fallback_policy: "sometimes" is not every_attempt or after_first_attempt`},
		{"[delivery]\nfallback_policy = \"after_first_attempt\"", "delivery.fallback_policy: after_first_attempt needs delivery.fallback_relay"},
		{"[lists]\ndatabase = \"mysql://db/fanmail\"", `lists.database: "mysql://db/fanmail": only postgres:// URLs`},
		{"[lists]\ndatabase = \"postgres://u:secret@/fanmail\"", `lists.database: "postgres://u:xxxxx@/fanmail" is not a PostgreSQL URL`},
		{"[lists]\ndatabse = \"x\"", "lists.databse: unknown key"},
		{"[node]\nname = \"mx 1\"", `node.name: "mx 1": use letters, digits`},
		{"[node]\nname = \"" + strings.Repeat("n", 64) + "\"", "is 64 characters; at most 63"},
	}
	for _, tt := range tests {
		wantRejected(t, tt.text, tt.want)
	}
}

func TestQueueGroups(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"big/q1", "big/q2"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := load(t, `data_dir = "`+dir+`"
[queue]
runners = 10
min_queue_age = "27m"
max_queue_children = 50
[[queue.group]]
name = "big"
path = "big/q*"
recipients_per_envelope = 50
runners = 3
[[queue.group]]
name = "control"
runners = 2
[[queue.rule]]
domains = ["gmail.com", "*.gmail.com"]
group = "big"
`)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := cfg.Spool(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]queuegroups.GroupConfig{}
	for _, g := range sc.Groups {
		got[g.Name] = g
	}
	perEnv := cfg.Routing().RecipientsPerEnvelope
	big := got["big"]
	if len(big.Dirs) != 2 || big.Dirs[0] != filepath.Join(dir, "big/q1") || big.Runners != 3 ||
		perEnv["big"] != 50 || big.MinQueueAge != 27*time.Minute {
		t.Errorf("big group: %+v, r=%d", big, perEnv["big"])
	}
	if def := got["default"]; def.Runners != 10 || def.Dirs[0] != filepath.Join(dir, "queue") || perEnv["default"] != 100 {
		t.Errorf("default group: %+v, r=%d", def, perEnv["default"])
	}
	if c := got["control"]; c.Runners != 2 || c.Dirs[0] != filepath.Join(dir, "queue-control") {
		t.Errorf("control group: %+v", c)
	}
	if sc.MaxQueueChildren != 50 || len(cfg.Routing().Rules) != 1 {
		t.Errorf("spool: %+v, routing: %+v", sc, cfg.Routing())
	}
	r, err := expander.NewRouter(cfg.Routing())
	if err != nil {
		t.Fatal(err)
	}
	for domain, want := range map[string]string{"gmail.com": "big", "mx.gmail.com": "big", "notgmail.com": "default", "example.org": "default"} {
		if g, _ := r.Route(domain); g != want {
			t.Errorf("Route(%s) = %s, want %s", domain, g, want)
		}
	}
}

// A group's source addresses, as strings or with their HELO names, reach
// delivery's pools.
func TestSourceAddresses(t *testing.T) {
	cfg := mustLoad(t, `hostname = "lists.example.org"
[[queue.group]]
name = "default"
source_max_connections = 5
[[queue.group.source_addresses]]
address = "127.0.0.2"
[[queue.group.source_addresses]]
address = "127.0.0.3"
helo = "out3.example.org"
`)
	want := map[string]delivery.SourcePool{"default": {MaxConnsPerSource: 5, Addrs: []delivery.SourceAddr{
		{IP: netip.MustParseAddr("127.0.0.2")}, {IP: netip.MustParseAddr("127.0.0.3"), HELO: "out3.example.org"}}}}
	if diff := cmp.Diff(want, cfg.DeliveryConfig(nil).Sources, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("delivery sources (-want +got):\n%s", diff)
	}
}

// [relay] reaches ingress as networks and fingerprints; a single
// address is a network of one.
func TestRelayPeers(t *testing.T) {
	fp := strings.Repeat("0a:", 31) + "0b"
	cfg := mustLoad(t, "[relay]\npeers = [\"192.0.2.7\", \"10.1.0.0/16\", \"2001:db8::/32\"]\n")
	got := cfg.IngressConfig(nil, nil).Peers
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8::/32")}
	if diff := cmp.Diff(want, got.Networks, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("peer networks (-want +got):\n%s", diff)
	}
	f, err := parseFingerprint(fp)
	if err != nil || f[0] != 0x0a || f[31] != 0x0b {
		t.Errorf("fingerprint %q read as %x, %v", fp, f, err)
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if err == nil || !strings.Contains(err.Error(), "nope.toml") {
		t.Errorf("missing file: %v, want an error naming the file", err)
	}
}

// TestValidateIsReadOnlyAndSorted: Validate reports every problem, in
// key order, the same on every call, and changes nothing.
func TestValidateIsReadOnlyAndSorted(t *testing.T) {
	cfg := Default()
	cfg.Hostname = "mx.test"
	cfg.Listen = "nowhere"
	cfg.Delivery.Port = 0
	cfg.Delivery.DataTimeout = 0
	cfg.Delivery.ConnectTimeout = -1
	cfg.Queue.Runners = 0
	cfg.Load.QueueLA = -1
	cfg.Routes = map[string]string{"Example.TEST.": "127.0.0.5"}
	before := cfg.String()
	err := cfg.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	var keys []string
	for _, line := range strings.Split(err.Error(), "\n") {
		key, _, _ := strings.Cut(line, ":")
		keys = append(keys, key)
	}
	want := []string{"delivery.connect_timeout", "delivery.data_timeout", "delivery.port", "listen", "load.queue_la",
		"queue.runners", "routes.Example.TEST."}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("error keys (-want +got):\n%s\nerror:\n%v", diff, err)
	}
	for i := 0; i < 5; i++ {
		if again := cfg.Validate(); again.Error() != err.Error() {
			t.Fatalf("second Validate reports\n%v\nafter\n%v", again, err)
		}
	}
	if after := cfg.String(); after != before {
		t.Errorf("Validate changed the config:\n%s\nwas:\n%s", after, before)
	}
}

// TestDefaultsAreThePackages: the defaults config shows are the
// packages' own, and map back onto them unchanged.
func TestDefaultsAreThePackages(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	dc, want := cfg.DeliveryConfig(nil), delivery.DefaultConfig()
	want.Resolvers, want.Routes, want.HELO, want.ResolvConf, want.DNSTimeout = dc.Resolvers, dc.Routes, dc.HELO, dc.ResolvConf, dc.DNSTimeout
	if diff := cmp.Diff(want, dc, cmpopts.IgnoreUnexported(x509.CertPool{})); diff != "" {
		t.Errorf("delivery config from the defaults (-delivery.DefaultConfig +mapped):\n%s", diff)
	}
	sc, err := cfg.Spool(nil)
	if err != nil {
		t.Fatal(err)
	}
	qd := queuegroups.DefaultConfig()
	if sc.Mode != qd.Mode || sc.SuperSafe != qd.SuperSafe || sc.RetryMin != qd.RetryMin || sc.RetryMax != qd.RetryMax ||
		sc.QueueReturn != qd.QueueReturn || sc.QueueWarn != qd.QueueWarn {
		t.Errorf("spool settings %+v, want queuegroups.DefaultConfig's %+v", sc, qd)
	}
	for i, g := range sc.Groups {
		if g.Name != qd.Groups[i].Name || g.Runners != qd.Groups[i].Runners || g.Interval != qd.Groups[i].Interval {
			t.Errorf("group %+v, want queuegroups.DefaultConfig's %+v", g, qd.Groups[i])
		}
	}
	in, id := cfg.IngressConfig(nil, nil), ingress.DefaultConfig()
	if in.Listen != id.Listen || in.MaxMessageSize != id.MaxMessageSize || in.Load.QueueLA != id.Load.QueueLA ||
		in.Load.RefuseLA != id.Load.RefuseLA || in.Load.Delay != id.Load.Delay ||
		in.MaxRecipients != id.MaxRecipients || in.RecipientOvershoot != id.RecipientOvershoot ||
		in.MaxErrors != id.MaxErrors || in.MaxJunkCommands != id.MaxJunkCommands || in.ReadTimeout != id.ReadTimeout ||
		in.WriteTimeout != id.WriteTimeout || in.SessionTimeout != id.SessionTimeout ||
		in.Load.MaxSessions != id.Load.MaxSessions || in.Load.MaxSessionsPerClient != id.Load.MaxSessionsPerClient ||
		in.Load.MinFreeSpace != id.Load.MinFreeSpace || in.Load.MaxConnectionRatePerClient != id.Load.MaxConnectionRatePerClient ||
		in.Load.ConnectionRateWindow != id.Load.ConnectionRateWindow ||
		!slices.Equal(in.Load.ConnectionRateExempt, id.Load.ConnectionRateExempt) {
		t.Errorf("ingress config %+v, want ingress.DefaultConfig's %+v", in, id)
	}
	if r := cfg.Routing().RecipientsPerEnvelope[queuegroups.DefaultGroup]; r != expander.DefaultRecipientsPerEnvelope {
		t.Errorf("default group r=%d, want %d", r, expander.DefaultRecipientsPerEnvelope)
	}
}

// A file with several mistakes gets them all reported at once, each
// with its line and key, the wrongly typed values included.
func TestEveryProblemAtOnce(t *testing.T) {
	text := `listen = "2525"
max_message_size = "lots"

[delivery]
port = 70000
connect_timeout = "soon"

[queue]
runner = 4
retry_min = "2h"
retry_max = "1h"

[[queue.group]]
name = "big"
runners = -1

[routes]
"example.test" = "127.0.0.5"
`
	path := filepath.Join(t.TempDir(), "fanmail.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatal("accepted")
	}
	var got []string
	for _, e := range unwrapAll(err) {
		var p *Problem
		if !errors.As(e, &p) {
			t.Fatalf("%v is not a *Problem", e)
		}
		if p.File != path {
			t.Errorf("%v: file %q, want %q", p, p.File, path)
		}
		got = append(got, fmt.Sprintf("%d %s", p.Line, p.Key))
	}
	want := []string{
		"2 max_message_size",
		"6 delivery.connect_timeout",
		"9 queue.runner",
		"5 delivery.port",
		"1 listen",
		"11 queue.retry_max",
		"13 queue.group big", // no path
		"13 queue.group big", // negative runners
		"18 routes.example.test",
		"8 queue", // retry_min > retry_max, as the queue sees it
	}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("problems (line key) (-want +got):\n%s\nerror:\n%v", diff, err)
	}
}

func TestTLSAndAdminKeys(t *testing.T) {
	for _, tt := range []struct{ text, want string }{
		{"[tls]\ncert = \"c.pem\"", "tls: give both cert and key"},
		{"[tls]\nmin_version = \"1.1\"", `tls.min_version: "1.1" is not "1.2" or "1.3"`},
		{"[tls]\nrequired = true", "tls.required: needs tls.cert and tls.key"},
		{`admin_address = "postmaster"`, `admin_address: "postmaster": missing @`},
		{`abuse_address = "a@@b"`, `abuse_address: "a@@b"`},
	} {
		wantRejected(t, tt.text, tt.want)
	}
	cfg := mustLoad(t, "admin_address = \"hostmaster@example.org\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nmin_version = \"1.3\"\nrequired = true")
	if cfg.TLS.MinTLSVersion() != 0x0304 || !cfg.TLS.Required || cfg.AdminAddress != "hostmaster@example.org" {
		t.Errorf("tls: %+v, admin %q", cfg.TLS, cfg.AdminAddress)
	}
}

// FuzzLoad feeds arbitrary bytes to Load as a config file: it returns a
// config or an error naming the file, never panics, and a config it
// accepts renders (config check) as TOML that loads to the same.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("listen = \"127.0.0.1:2525\"\nmax_message_size = \"10MB\"\n[queue]\nrunners = 8\nmove_aside_after = 2\nsegment_size = \"1MB\"\n[[queue.group]]\nname = \"big\"\npath = \"big\"\n[[queue.rule]]\ndomains = [\"*.example.com\"]\ngroup = \"big\"\n"))
	f.Add([]byte("[delivery]\nresolvers = [\"127.0.0.1:53\"]\nport = 25\n[load]\nqueue_la = 1.5\n[routes]\n\"a.test\" = \"127.0.0.1:2526\"\n"))
	f.Add([]byte("[queue]\nsupersafe = \"interactive\"\ndelivery_mode = \"q\"\nretry_min = \"1s\"\n"))
	f.Add([]byte("x = [1, 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "fanmail.toml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), "fanmail.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		again := filepath.Join(dir, "again.toml")
		if err := os.WriteFile(again, []byte(cfg.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(again); err != nil {
			t.Fatalf("the effective config of an accepted file does not load: %v\n%s", err, cfg.String())
		}
	})
}
