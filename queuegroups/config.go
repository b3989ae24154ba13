package queuegroups

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Names of the groups every spool has.
const (
	DefaultGroup = "default" // domains no rule names go here (sendmail's mqueue)
	ControlGroup = "control" // mail fanmail itself generates: DSNs, notices, probes
)

// Config is the whole spool: its groups, the rules that pick a group for a
// destination domain, and the settings every group shares.
type Config struct {
	Groups []GroupConfig // must include DefaultGroup and ControlGroup
	Rules  []Rule        // first match wins; no match means DefaultGroup

	// MaxQueueChildren caps deliveries in progress over all groups
	// together (sendmail MaxQueueChildren); 0 means no cap beyond each
	// group's runners. The control group is outside the cap so the
	// mail fanmail generates never waits behind a big fan-out.
	MaxQueueChildren int

	Mode      DeliveryMode // default for messages that do not say; zero is background
	SuperSafe SuperSafe

	RetryMin    time.Duration // first retry after a deferral
	RetryMax    time.Duration // backoff ceiling
	QueueReturn time.Duration // give up after (sendmail Timeout.queuereturn)
	QueueWarn   time.Duration // send a delay warning after (Timeout.queuewarn); 0 = never
	Hostname    string        // the reporting MTA named in DSNs
	SegmentSize int64         // journal segment size; 0 means 64 MiB
	Logger      *slog.Logger
}

// GroupConfig is one queue group, sendmail's QUEUE_GROUP.
type GroupConfig struct {
	Name                  string
	Dirs                  []string      // P=: one per disk; envelopes are spread over them
	Runners               int           // R=: deliveries in progress at once
	RecipientsPerEnvelope int           // r=
	Interval              time.Duration // I=: the queue run interval, for queue-only mail
	MinQueueAge           time.Duration // MinQueueAge: no retry sooner than this after an attempt
}

// Rule sends destination domains matching any pattern to Group. A pattern
// is a domain ("example.com", that domain only) or "*.example.com" (every
// subdomain, not the domain itself).
type Rule struct {
	Patterns []string
	Group    string
}

// SuperSafe is sendmail's SuperSafe: when the spool forces data to disk.
type SuperSafe int

const (
	// SafeTrue syncs every message before Enqueue returns (the 250).
	SafeTrue SuperSafe = iota
	// SafeFalse never waits for the disk: fast, and a crash of the
	// machine (not just the process) can lose accepted mail. For
	// generated one-to-one mail that can be sent again.
	SafeFalse
	// SafeInteractive skips the sync before delivery in interactive
	// mode, where the client still waits; one sync after the first
	// attempts covers what is left. Other modes behave as SafeTrue.
	SafeInteractive
)

func (s SuperSafe) String() string {
	switch s {
	case SafeFalse:
		return "false"
	case SafeInteractive:
		return "interactive"
	}
	return "true"
}

func (m DeliveryMode) String() string {
	switch m {
	case ModeInteractive:
		return "interactive"
	case ModeQueue:
		return "queue"
	case ModeBackground:
		return "background"
	}
	return "default"
}

// ParseDeliveryMode reads sendmail's mode names, long or one-letter.
func ParseDeliveryMode(s string) (DeliveryMode, error) {
	switch strings.ToLower(s) {
	case "background", "b":
		return ModeBackground, nil
	case "interactive", "i":
		return ModeInteractive, nil
	case "queue", "q":
		return ModeQueue, nil
	}
	return 0, fmt.Errorf("%q is not a delivery mode: use background, interactive or queue", s)
}

// Validate reports what Open would reject in cfg, so configuration errors
// surface when the config is checked, not when the spool opens.
func Validate(cfg Config) error {
	_, err := cfg.withDefaults()
	return err
}

// withDefaults checks cfg and fills in what it leaves out.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.SegmentSize <= 0 {
		cfg.SegmentSize = 64 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.RetryMin <= 0 || cfg.RetryMax < cfg.RetryMin || cfg.QueueReturn <= 0 {
		return cfg, fmt.Errorf("retry %v..%v, queuereturn %v: need 0 < retry_min <= retry_max and queuereturn > 0",
			cfg.RetryMin, cfg.RetryMax, cfg.QueueReturn)
	}
	cfg.Groups = append([]GroupConfig(nil), cfg.Groups...)
	seen := map[string]bool{}
	dirs := map[string]string{}
	var errs []error
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		if g.Runners <= 0 {
			g.Runners = 1
		}
		if g.RecipientsPerEnvelope <= 0 {
			g.RecipientsPerEnvelope = 100
		}
		if g.Interval <= 0 {
			g.Interval = time.Minute
		}
		switch {
		case !validGroupName(g.Name):
			errs = append(errs, fmt.Errorf("queue group %q: names are letters, digits, - and _", g.Name))
		case seen[g.Name]:
			errs = append(errs, fmt.Errorf("queue group %s is declared twice", g.Name))
		case len(g.Dirs) == 0:
			errs = append(errs, fmt.Errorf("queue group %s has no directory", g.Name))
		}
		seen[g.Name] = true
		for _, d := range g.Dirs {
			if other, ok := dirs[d]; ok {
				errs = append(errs, fmt.Errorf("queue groups %s and %s share directory %s; each directory belongs to one group", other, g.Name, d))
			}
			dirs[d] = g.Name
		}
	}
	for _, name := range []string{DefaultGroup, ControlGroup} {
		if !seen[name] {
			errs = append(errs, fmt.Errorf("no %q queue group", name))
		}
	}
	for _, r := range cfg.Rules {
		if !seen[r.Group] {
			errs = append(errs, fmt.Errorf("rule for %s names queue group %q, which is not declared", strings.Join(r.Patterns, ", "), r.Group))
		}
		if r.Group == ControlGroup {
			errs = append(errs, fmt.Errorf("rule for %s: the %s group is for mail fanmail generates, not for domains", strings.Join(r.Patterns, ", "), ControlGroup))
		}
		for _, p := range r.Patterns {
			if err := checkPattern(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if cfg.MaxQueueChildren < 0 {
		errs = append(errs, errors.New("max_queue_children must not be negative"))
	}
	return cfg, errors.Join(errs...)
}

func validGroupName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func checkPattern(p string) error {
	d := strings.TrimPrefix(p, "*.")
	if d == "" || strings.ContainsAny(d, "*@ \t") || d != strings.ToLower(d) || strings.HasPrefix(d, ".") {
		return fmt.Errorf("domain pattern %q: use a lowercase domain (example.com) or *.example.com for its subdomains", p)
	}
	return nil
}

// Router picks a destination domain's queue group and envelope size; the
// expander asks it while cutting envelopes. It never does DNS lookups.
type Router struct {
	exact    map[string]int // domain → index of the first rule naming it
	suffixes []suffixRule   // "*.d" patterns in rule order
	rules    []Rule
	perEnv   map[string]int
}

type suffixRule struct {
	suffix string // ".example.com"
	rule   int
}

// NewRouter builds the routing table of a validated config.
func NewRouter(cfg Config) *Router {
	r := &Router{exact: map[string]int{}, rules: cfg.Rules, perEnv: map[string]int{}}
	for i, rule := range cfg.Rules {
		for _, p := range rule.Patterns {
			if s, ok := strings.CutPrefix(p, "*."); ok {
				r.suffixes = append(r.suffixes, suffixRule{suffix: "." + s, rule: i})
			} else if _, dup := r.exact[p]; !dup {
				r.exact[p] = i
			}
		}
	}
	for _, g := range cfg.Groups {
		r.perEnv[g.Name] = g.RecipientsPerEnvelope
		if r.perEnv[g.Name] <= 0 {
			r.perEnv[g.Name] = 100
		}
	}
	return r
}

// Route returns the group for domain (lowercase) and that group's r=.
// Rules are tried in order; the first whose pattern matches wins.
func (r *Router) Route(domain string) (group string, perEnvelope int) {
	best := len(r.rules)
	if i, ok := r.exact[domain]; ok {
		best = i
	}
	for _, s := range r.suffixes {
		if s.rule >= best {
			break
		}
		if strings.HasSuffix(domain, s.suffix) {
			best = s.rule
			break
		}
	}
	group = DefaultGroup
	if best < len(r.rules) {
		group = r.rules[best].Group
	}
	return group, r.perEnv[group]
}
