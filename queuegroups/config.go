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

// Config is the whole spool: its groups and the settings every group
// shares. Which group an envelope goes to is the expander's choice (its
// Router); the spool takes envelopes already routed.
type Config struct {
	Groups []GroupConfig // must include DefaultGroup and ControlGroup

	// MaxQueueChildren caps deliveries in progress over all groups
	// together (sendmail MaxQueueChildren); 0 derives it from the limit on
	// open files and the cores (AutoQueueChildren). The control group is outside the
	// cap so the mail fanmail generates never waits behind a big fan-out.
	MaxQueueChildren int

	Mode      DeliveryMode // default for messages that do not say; zero is background
	SuperSafe SuperSafe

	RetryMin    time.Duration // first retry after a deferral
	RetryMax    time.Duration // backoff ceiling
	QueueReturn time.Duration // give up after (sendmail Timeout.queuereturn)
	QueueWarn   time.Duration // send a delay warning after (Timeout.queuewarn); 0 = never
	Hostname    string        // the reporting MTA named in DSNs
	Node        string        // in the IDs of the DSNs it makes (NewNodeIDSource); "" = none
	SegmentSize int64         // journal segment size; 0 means 64 MiB
	// MoveAsideAfter is how many attempts in a row of one envelope may
	// panic or die with the server before its message is moved aside
	// (kept, marked, never retried); 0 means 3.
	MoveAsideAfter int
	Logger         *slog.Logger
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

// DefaultConfig is the spool when nothing is set: the default and control
// groups (without directories, which the caller chooses) and every
// shared setting. Open fills a zero field of its Config from here;
// package config shows these values as the [queue] defaults.
func DefaultConfig() Config {
	return Config{
		Groups:      []GroupConfig{defaultGroupConfig(DefaultGroup), defaultGroupConfig(ControlGroup)},
		Mode:        ModeBackground,
		SuperSafe:   SafeTrue,
		RetryMin:    5 * time.Minute,
		RetryMax:    4 * time.Hour,
		QueueReturn: 5 * 24 * time.Hour,
		QueueWarn:   4 * time.Hour,
		Hostname:    "localhost",
		SegmentSize: 64 << 20,

		MoveAsideAfter: 3,
	}
}

// DefaultRunners is a queue group's R= when none is set. A delivery
// mostly waits on the network, which costs a goroutine and a socket, not
// a core: thousands of slow destinations are served at once, and what
// bounds them in practice is MaxQueueChildren, from the open-file limit.
const DefaultRunners = 4096

// defaultGroupConfig is a group's settings when nothing is set: a few
// runners for the control group, whose mail is small and rare, many for
// every other; a queue run a minute.
func defaultGroupConfig(name string) GroupConfig {
	g := GroupConfig{Name: name, Runners: DefaultRunners, Interval: time.Minute}
	if name == ControlGroup {
		g.Runners = 16
	}
	return g
}

// Validate reports what Open would reject in cfg, so configuration errors
// surface when the config is checked, not when the spool opens.
func Validate(cfg Config) error {
	_, err := cfg.withDefaults()
	return err
}

// withDefaults checks cfg and fills in what it leaves out.
func (cfg Config) withDefaults() (Config, error) {
	def := DefaultConfig()
	if cfg.SegmentSize <= 0 {
		cfg.SegmentSize = def.SegmentSize
	}
	if cfg.MoveAsideAfter <= 0 {
		cfg.MoveAsideAfter = def.MoveAsideAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = def.Hostname
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
			g.Runners = 1 // a group without runners would never deliver
		}
		if g.Interval <= 0 {
			g.Interval = defaultGroupConfig(g.Name).Interval
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
