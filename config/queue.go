package config

import (
	"cmp"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"fanmail/expander"
	"fanmail/queuegroups"
)

// Queue configures the spool: the default group's settings (which every
// declared group inherits for what it leaves unset, as sendmail's groups
// take the options set before them), extra groups, and the ordered rules
// that send destination domains to groups.
type Queue struct {
	Runners               int       `toml:"runners"`                 // default group's R=
	RecipientsPerEnvelope int       `toml:"recipients_per_envelope"` // default group's r=
	Interval              Duration  `toml:"interval"`                // I=: queue run interval for queue-only mail
	MinQueueAge           Duration  `toml:"min_queue_age"`           // MinQueueAge: no retry sooner than this
	MaxQueueChildren      int       `toml:"max_queue_children"`      // MaxQueueChildren: all groups' deliveries; 0 = from the open-file limit and cores
	DeliveryMode          string    `toml:"delivery_mode"`           // background | interactive | queue
	SuperSafe             SuperSafe `toml:"supersafe"`               // true | false | "interactive"
	RetryMin              Duration  `toml:"retry_min"`               // first retry after a deferral
	RetryMax              Duration  `toml:"retry_max"`               // backoff ceiling
	QueueReturn           Duration  `toml:"queuereturn"`             // give up and fail after
	QueueWarn             Duration  `toml:"queuewarn"`               // delay warning after; 0 = never
	MoveAsideAfter        int       `toml:"move_aside_after"`        // strikes in a row (panics, crashes in delivery) that move a message aside
	SegmentSize           Size      `toml:"segment_size"`            // journal segment size

	Groups []Group `toml:"group"`
	Rules  []Rule  `toml:"rule"`
}

// Group is one [[queue.group]] table; zero fields inherit from [queue].
type Group struct {
	Name                  string   `toml:"name"`
	Path                  Paths    `toml:"path"` // directories or globs, relative to data_dir
	Runners               int      `toml:"runners"`
	RecipientsPerEnvelope int      `toml:"recipients_per_envelope"`
	Interval              Duration `toml:"interval"`
	MinQueueAge           Duration `toml:"min_queue_age"`
	// SourceAddresses are the local addresses the group's connections
	// leave from, in turn (delivery/sources.go); SourceMaxConnections
	// caps each one's connections to one MX group.
	SourceAddresses      []SourceAddr `toml:"source_addresses"`
	SourceMaxConnections int          `toml:"source_max_connections"`
}

// Rule is one [[queue.rule]] table: domains matching go to group.
type Rule struct {
	Domains []string `toml:"domains"`
	Group   string   `toml:"group"`
}

// Paths is one directory or a list of them; each may be a glob.
type Paths []string

func (p *Paths) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*p = Paths{v}
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("path: %v is not a string", e)
			}
			*p = append(*p, s)
		}
	default:
		return fmt.Errorf("path: give a directory or a list of directories")
	}
	return nil
}

// SuperSafe is written `true`, `false` or `"interactive"`.
type SuperSafe struct{ V queuegroups.SuperSafe }

func (s *SuperSafe) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case bool:
		s.V = queuegroups.SafeFalse
		if v {
			s.V = queuegroups.SafeTrue
		}
		return nil
	case string:
		switch strings.ToLower(v) {
		case "true":
			s.V = queuegroups.SafeTrue
			return nil
		case "false":
			s.V = queuegroups.SafeFalse
			return nil
		case "interactive":
			s.V = queuegroups.SafeInteractive
			return nil
		}
	}
	return fmt.Errorf("supersafe: %v is not true, false or \"interactive\"", v)
}

func (s SuperSafe) MarshalText() ([]byte, error) { return []byte(s.V.String()), nil }

// groupDirs expands a group's paths: relative ones live under data_dir, a
// glob must match at least one directory.
func (c *Config) groupDirs(name string, paths Paths) ([]string, error) {
	var dirs []string
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			p = filepath.Join(c.DataDir, p)
		}
		if !strings.ContainsAny(p, "*?[") {
			dirs = append(dirs, filepath.Clean(p))
			continue
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("queue group %s: path %q: %v", name, p, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("queue group %s: path %q matches no directory; create them first (one per disk)", name, p)
		}
		dirs = append(dirs, matches...)
	}
	return dirs, nil
}

// validateQueue checks the [queue] section and its groups and rules by
// building the spool config, so what passes here opens at start-up.
func (c *Config) validateQueue(bad func(key, format string, args ...any)) {
	q := &c.Queue
	atLeast(bad, 1, "must be at least 1", map[string]int{
		"queue.runners":                 q.Runners,
		"queue.recipients_per_envelope": q.RecipientsPerEnvelope,
		"queue.move_aside_after":        q.MoveAsideAfter,
	})
	if q.MaxQueueChildren < 0 {
		bad("queue.max_queue_children", "must be 0 (no cap) or more")
	}
	if q.Interval <= 0 {
		bad("queue.interval", "must be a positive duration such as \"1m\"")
	}
	if q.QueueWarn < 0 {
		bad("queue.queuewarn", "must be 0 (no warning) or a duration such as \"4h\"")
	}
	if q.MinQueueAge < 0 {
		bad("queue.min_queue_age", "must not be negative")
	}
	if q.SegmentSize < 64<<10 {
		bad("queue.segment_size", "must be at least \"64KB\"")
	}
	if _, err := queuegroups.ParseDeliveryMode(q.DeliveryMode); err != nil {
		bad("queue.delivery_mode", "%v", err)
	}
	for i, g := range q.Groups {
		key := fmt.Sprintf("queue.group[%d]", i)
		if g.Name != "" {
			key = "queue.group " + g.Name
		}
		if g.Runners < 0 || g.RecipientsPerEnvelope < 0 || g.Interval < 0 || g.MinQueueAge < 0 {
			bad(key, "runners, recipients_per_envelope, interval and min_queue_age must not be negative (0 inherits from [queue])")
		}
		if len(g.Path) == 0 && g.Name != queuegroups.DefaultGroup && g.Name != queuegroups.ControlGroup {
			bad(key, "needs path = \"DIR\" or a list of directories (one per disk)")
		}
	}
	c.validateSources(bad)
	for i, r := range q.Rules {
		if len(r.Domains) == 0 || r.Group == "" {
			bad(fmt.Sprintf("queue.rule[%d]", i), "needs domains = [\"example.com\", \"*.example.com\"] and group = \"NAME\"")
		}
	}
	if _, err := c.Spool(nil); err != nil {
		bad("queue", "%v", err)
	}
	if _, err := expander.NewRouter(c.Routing()); err != nil {
		bad("queue", "%v", err)
	}
}

// Spool returns the queuegroups configuration: every group of groups,
// with what it leaves unset inherited from [queue].
func (c *Config) Spool(log *slog.Logger) (queuegroups.Config, error) {
	q := c.Queue
	mode, _ := queuegroups.ParseDeliveryMode(q.DeliveryMode)
	sc := queuegroups.Config{
		MaxQueueChildren: q.MaxQueueChildren,
		Mode:             mode,
		SuperSafe:        q.SuperSafe.V,
		RetryMin:         q.RetryMin.D(),
		RetryMax:         q.RetryMax.D(),
		QueueReturn:      q.QueueReturn.D(),
		QueueWarn:        q.QueueWarn.D(),
		MoveAsideAfter:   q.MoveAsideAfter,
		SegmentSize:      int64(q.SegmentSize),
		Hostname:         c.Hostname,
		Node:             c.Node.Name,
		Logger:           log,
	}
	inherit := func(g Group) queuegroups.GroupConfig {
		gc := queuegroups.GroupConfig{Name: g.Name, Runners: q.Runners,
			Interval: q.Interval.D(), MinQueueAge: q.MinQueueAge.D()}
		if g.Runners > 0 {
			gc.Runners = g.Runners
		}
		if g.Interval > 0 {
			gc.Interval = g.Interval.D()
		}
		if g.MinQueueAge > 0 {
			gc.MinQueueAge = g.MinQueueAge.D()
		}
		return gc
	}
	for _, g := range c.groups() {
		gc := inherit(g)
		dirs, err := c.groupDirs(g.Name, g.Path)
		if err != nil {
			return sc, err
		}
		gc.Dirs = dirs
		sc.Groups = append(sc.Groups, gc)
	}
	if err := queuegroups.Validate(sc); err != nil {
		return sc, err
	}
	return sc, nil
}

// groups returns every queue group: the default and control groups, as
// declared or built in (default in data_dir/queue, control in
// data_dir/queue-control), then the other declared groups in order.
func (c *Config) groups() []Group {
	control := queuegroups.DefaultConfig().Groups[1] // the control group's own runners
	builtin := map[string]Group{
		queuegroups.DefaultGroup: {Name: queuegroups.DefaultGroup, Path: Paths{"queue"}},
		queuegroups.ControlGroup: {Name: queuegroups.ControlGroup, Path: Paths{"queue-control"}, Runners: control.Runners},
	}
	var declared []Group
	for _, g := range c.Queue.Groups {
		if b, ok := builtin[g.Name]; ok {
			if len(g.Path) == 0 {
				g.Path = b.Path
			}
			if g.Runners == 0 {
				g.Runners = b.Runners
			}
			builtin[g.Name] = g
			continue
		}
		declared = append(declared, g)
	}
	return append([]Group{builtin[queuegroups.DefaultGroup], builtin[queuegroups.ControlGroup]}, declared...)
}

// Routing returns the expander's queuegroup ruleset: the [[queue.rule]]
// tables in order, and every group's recipients_per_envelope (r=),
// inherited from [queue] where a group leaves it unset.
func (c *Config) Routing() expander.RouterConfig {
	rc := expander.RouterConfig{RecipientsPerEnvelope: map[string]int{}}
	for _, g := range c.groups() {
		n := c.Queue.RecipientsPerEnvelope
		if g.RecipientsPerEnvelope > 0 {
			n = g.RecipientsPerEnvelope
		}
		rc.RecipientsPerEnvelope[g.Name] = n
	}
	for _, r := range c.Queue.Rules {
		pats := make([]string, len(r.Domains))
		for i, d := range r.Domains {
			pats[i] = strings.ToLower(strings.TrimSuffix(d, "."))
		}
		rc.Rules = append(rc.Rules, expander.Rule{Patterns: pats, Group: r.Group})
	}
	return rc
}

// SpoolSummary describes the queue groups and rules in effect, with
// inherited values filled in and globs expanded, as TOML comments for
// `fanmail config check`.
func (c *Config) SpoolSummary() string {
	sc, err := c.Spool(nil)
	if err != nil {
		return fmt.Sprintf("# queue groups: %v\n", err)
	}
	rc := c.Routing()
	var b strings.Builder
	b.WriteString("\n# queue groups in effect:\n")
	for _, g := range sc.Groups {
		fmt.Fprintf(&b, "#   %-10s runners=%d recipients_per_envelope=%d interval=%v min_queue_age=%v dirs=%s\n",
			g.Name, g.Runners, rc.RecipientsPerEnvelope[g.Name], g.Interval, g.MinQueueAge, strings.Join(g.Dirs, ","))
		if p, ok := c.sourcePools()[g.Name]; ok {
			var addrs []string
			for _, a := range p.Addrs {
				addrs = append(addrs, a.IP.String()+"="+cmp.Or(a.HELO, c.Hostname))
			}
			fmt.Fprintf(&b, "#   %-10s source_addresses=%s source_max_connections=%d\n", "", strings.Join(addrs, ","), p.MaxConnsPerSource)
		}
	}
	for _, r := range rc.Rules {
		fmt.Fprintf(&b, "#   rule: %s -> %s\n", strings.Join(r.Patterns, ", "), r.Group)
	}
	b.WriteString("#   every other domain -> default\n")
	return b.String()
}
