package main

import (
	"fmt"
	"net"
	"time"
)

const (
	defaultTimeout = 10 * time.Minute
	defaultSettle  = time.Second

	worldPlain    = "plain"
	worldInternet = "internet"
)

// Flags that shape only one of the two worlds.
var (
	plainFlags    = []string{"dist", "sinks", "rtt", "max-conns", "implicit-mx", "null-mx", "dead-mx"}
	internetFlags = []string{"seed", "giants", "zipf", "rtt-range", "giant-rtt", "greylist", "greylist-delay",
		"tarpit", "tarpit-banner", "tarpit-reply", "blackhole", "throttle-conns", "throttle-msgs", "conns", "max-rcpts"}
)

// defaults fills workload-dependent defaults and rejects what would
// leave loopback or cannot work.
func (o *options) defaults() error {
	if o.sinks == 0 {
		o.sinks = min(o.domains, 250*250)
	}
	if o.clients == 0 {
		switch o.workload {
		case "mass":
			o.clients = 20
		case "mixed":
			o.clients = max(o.lists, 10)
		default:
			o.clients = 1
		}
	}
	if o.lists == 0 {
		switch o.workload {
		case "mass":
			o.lists = 100
		case "mixed":
			o.lists = 10
		}
	}
	switch {
	case o.members < 1, o.domains < 1, o.size < 200, o.messages < 1, o.clients < 1, o.posts < 1:
		return fmt.Errorf("--members, --domains, --messages, --clients and --posts must be positive, --size at least 200")
	case o.timeout <= 0 || o.timeout > 2*time.Hour:
		return fmt.Errorf("--timeout %v: want up to 2h", o.timeout)
	case o.settle < 0 || o.settle > time.Minute:
		return fmt.Errorf("--settle %v: want up to 1m", o.settle)
	case o.tempFail < 0 || o.tempFail >= 1, o.permFail < 0 || o.permFail > 1, o.dropShare < 0 || o.dropShare >= 1:
		return fmt.Errorf("--temp-fail and --drop must be in [0,1), --perm-fail in [0,1]")
	}
	if err := o.worldDefaults(); err != nil {
		return err
	}
	for flagName, addr := range map[string]string{"--dns": o.dnsAddr, "--target": o.target} {
		if addr == "" {
			continue
		}
		if err := loopbackOnly(addr); err != nil {
			return fmt.Errorf("%s: %w", flagName, err)
		}
	}
	if o.target == "" && (o.aliases != "" || o.prepareCmd != "" || o.targetPID != 0 || o.targetPIDFile != "") {
		return fmt.Errorf("--aliases, --prepare-cmd, --target-pid and --target-pidfile go with --target")
	}
	if o.target != "" && (len(o.listSet) > 0 || len(o.dkim) > 0 || o.personalize != "") {
		return fmt.Errorf("--list-set, --dkim and --personalize set up fanmail; they do not go with --target")
	}
	if o.direct && o.target == "" {
		return fmt.Errorf("--direct: fanmail never relays; it takes posts only for lists")
	}
	o.aliases = absPath(o.aliases)
	return nil
}

// loopbackOnly accepts only host:port on 127.0.0.0/8: the tool never
// sends a byte anywhere else.
func loopbackOnly(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", hostport, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not an IPv4 loopback address (127.0.0.0/8)", host)
	}
	return nil
}

// worldDefaults checks that the flags given belong to the chosen world
// and fills the Internet world's defaults.
func (o *options) worldDefaults() error {
	switch o.world {
	case "", worldPlain:
		o.world = worldPlain
		for _, f := range internetFlags {
			if o.setFlags[f] {
				return fmt.Errorf("--%s shapes the Internet world: add --world internet", f)
			}
		}
		return nil
	case worldInternet:
	default:
		return fmt.Errorf("--world %q: want plain or internet", o.world)
	}
	for _, f := range plainFlags {
		if o.setFlags[f] {
			return fmt.Errorf("--%s shapes the plain world; --world internet gives every domain its own sink and draws the rest (--rtt-range, --giants, --throttle-conns, ...)", f)
		}
	}
	if !o.setFlags["perm-fail"] {
		o.permFail = defaultUnknown
	}
	o.dist = worldInternet // for the report: the world decides the spread
	if o.domains > 250*250 {
		return fmt.Errorf("--domains %d: the Internet world has a sink per domain, at most 62500", o.domains)
	}
	return o.net.validate(o.domains)
}
