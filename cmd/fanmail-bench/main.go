// Command fanmail-bench measures an SMTP server on fan-out work, on
// loopback only: it starts SMTP sinks (one per loopback address) and a DNS
// server naming them, prepares a list (fanmail's CLI) or an aliases file
// (other MTAs), injects posts, and reports how fast every recipient
// reached the sinks, with duplicates, latency and the target's CPU.
//
// Usage:
//
//	fanmail-bench fanout [flags]   one post to a list of --members
//	fanmail-bench mass [flags]     --messages one-recipient posts from --clients
//	fanmail-bench mixed [flags]    --lists lists, --posts each, posted concurrently
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "fanmail-bench: %v\n", err)
		os.Exit(1)
	}
}

// commandLine renders the invocation for the report, quoting arguments
// so it can be pasted back into a shell.
func commandLine(args []string) string {
	parts := []string{"fanmail-bench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$;&|<>*?()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: fanmail-bench fanout|mass|mixed [flags]   (fanmail-bench fanout -h for flags)")
		return fmt.Errorf("no workload given")
	}
	o := &options{workload: args[0], command: commandLine(args)}
	fs := flag.NewFlagSet("fanmail-bench "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.world, "world", worldPlain, "plain (sinks alike, shaped by the flags below), or internet: giants that throttle, a long tail, greylisting, tarpits and black holes (flags after --seed)")
	fs.IntVar(&o.members, "members", 1000, "list members in all (fanout, mixed)")
	fs.IntVar(&o.domains, "domains", 100, "recipient domains (one sink each unless --sinks)")
	fs.StringVar(&o.dist, "dist", "uniform", "members over domains: uniform, or skewed (Zipf: a few huge domains, a long tail)")
	fs.IntVar(&o.sinks, "sinks", 0, "SMTP sinks, each on its own 127.1.x.y address (default: one per domain)")
	fs.IntVar(&o.sinkPort, "sink-port", 2526, "TCP port of every sink (the target's MX port)")
	fs.IntVar(&o.size, "size", 4096, "message size in bytes, headers included")
	fs.IntVar(&o.messages, "messages", 1000, "mass: one-recipient posts to inject")
	fs.IntVar(&o.clients, "clients", 0, "concurrent injecting SMTP sessions (default: mass 20, mixed --lists, fanout 1)")
	fs.IntVar(&o.lists, "lists", 0, "mixed: lists (default 10); mass: distinct recipients, each a one-member list on fanmail (default 100)")
	fs.IntVar(&o.posts, "posts", 1, "mixed: posts to each list")
	fs.BoolVar(&o.direct, "direct", false, "mass: RCPT the recipient itself, not its one-member list (MTAs that relay from loopback)")
	fs.DurationVar(&o.rtt, "rtt", 0, "emulated WAN round trip per exchange at the sinks, e.g. 50ms")
	fs.Float64Var(&o.tempFail, "temp-fail", 0, "share of RCPTs the sinks answer 451 (at random, per attempt)")
	fs.Float64Var(&o.permFail, "perm-fail", 0, "share of recipients the sinks answer 550 5.1.1 (fixed per address; not expected); internet default 0.02")
	fs.Float64Var(&o.dropShare, "drop", 0, "share of transactions whose connection the sinks drop before replying to the final dot")
	fs.IntVar(&o.maxConns, "max-conns", 0, "cap on concurrent connections per sink (421 beyond), like a large provider")
	fs.IntVar(&o.implicitMX, "implicit-mx", 0, "domains with no MX, only an A record")
	fs.IntVar(&o.nullMX, "null-mx", 0, "domains with a null MX; their members are not expected")
	fs.IntVar(&o.deadMX, "dead-mx", 0, "domains whose first MX refuses connections")
	o.net = defaultInternet()
	n := &o.net
	fs.Uint64Var(&n.seed, "seed", n.seed, "internet: seed of the world's random draws (same seed, same world)")
	fs.Var((*floatList)(&n.giants), "giants", "internet: member shares of the largest domains, largest first; they throttle (--throttle-*)")
	fs.Float64Var(&n.zipf, "zipf", n.zipf, "internet: exponent of the Zipf law the other domains' shares follow by rank")
	fs.Var(&n.rtt, "rtt-range", "internet: round trip of the non-giant domains, drawn log-uniform from LO..HI")
	fs.Var(&n.giantRTT, "giant-rtt", "internet: round trip of the giants, drawn uniform from LO..HI")
	fs.Float64Var(&n.greylist, "greylist", n.greylist, "internet: share of domains that greylist (451 4.7.1 until --greylist-delay after a pair's first attempt)")
	fs.DurationVar(&n.greyDelay, "greylist-delay", n.greyDelay, "internet: how long a (sender, recipient) pair stays greylisted")
	fs.Float64Var(&n.tarpit, "tarpit", n.tarpit, "internet: share of domains that are tarpits")
	fs.Var(&n.tarpitBanner, "tarpit-banner", "internet: a tarpit's greeting delay, drawn uniform from LO..HI")
	fs.DurationVar(&n.tarpitReply, "tarpit-reply", n.tarpitReply, "internet: extra delay on every later tarpit reply")
	fs.Float64Var(&n.blackhole, "blackhole", n.blackhole, "internet: share of domains whose MX never answers a SYN")
	fs.IntVar(&n.throttleConns, "throttle-conns", n.throttleConns, "internet: giants' cap on concurrent connections per client address (421 4.7.0 at the greeting beyond; 0: none)")
	fs.IntVar(&n.throttleMsgs, "throttle-msgs", n.throttleMsgs, "internet: giants' cap on messages per connection (421 4.7.0 and close beyond; 0: none)")
	fs.IntVar(&n.conns, "conns", n.conns, "internet: other domains' cap on concurrent connections per client address (Postfix's anvil default; 0: none)")
	fs.IntVar(&n.maxRcpts, "max-rcpts", n.maxRcpts, "internet: every domain's recipients per transaction (452 4.5.3 beyond; 0: none)")
	fs.StringVar(&o.dnsAddr, "dns", "127.0.0.1:0", "DNS server address (127.0.0.1:53 for MTAs that use the system resolver)")
	fs.StringVar(&o.target, "target", "", "HOST:PORT of an SMTP server to measure instead of fanmail (loopback only)")
	fs.StringVar(&o.fanmailBin, "fanmail-bin", "", "fanmail binary (default: go build ./cmd/fanmail)")
	fs.StringVar(&o.database, "database", "", "fanmail's list store: \"\" (SQLite in the work directory), an empty postgres:// database, or postgres-temp: a throwaway PostgreSQL cluster in the work directory (initdb, fsync on; Debian package postgresql)")
	fs.Func("set", "fanmail: add SECTION.KEY=VALUE (a TOML value) to its config, e.g. delivery.pipelining=false; repeatable",
		func(v string) error {
			k, _, ok := strings.Cut(v, "=")
			if !ok || !strings.Contains(k, ".") {
				return fmt.Errorf("--set %q: want SECTION.KEY=VALUE", v)
			}
			o.fanmailSet = append(o.fanmailSet, v)
			return nil
		})
	fs.Func("list-set", "fanmail: set KEY=VALUE on every list (fanmail list set) after posting=open; repeatable, e.g. subject_prefix=[bench]",
		func(v string) error {
			if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
				return fmt.Errorf("--list-set %q: want KEY=VALUE", v)
			}
			o.listSet = append(o.listSet, v)
			return nil
		})
	fs.Func("dkim", "fanmail: sign every copy with a new key of each ALG for the list domain: rsa, ed25519 or rsa,ed25519",
		func(v string) error {
			for _, alg := range strings.Split(v, ",") {
				if alg != "rsa" && alg != "ed25519" {
					return fmt.Errorf("--dkim %q: want rsa, ed25519 or rsa,ed25519", v)
				}
				o.dkim = append(o.dkim, alg)
			}
			return nil
		})
	fs.Func("personalize", "fanmail: every list's personalize setting: off, verp or full (full with [web] base_url, so each copy gets its one-click link; add --dkim to sign per member)",
		func(v string) error {
			if v != "off" && v != "verp" && v != "full" {
				return fmt.Errorf("--personalize %q: want off, verp or full", v)
			}
			o.personalize = v
			return nil
		})
	fs.IntVar(&o.targetPID, "target-pid", 0, "--target: PID whose process tree's CPU and memory to report")
	fs.StringVar(&o.targetPIDFile, "target-pidfile", "", "--target: file holding that PID, e.g. /var/spool/postfix/pid/master.pid")
	fs.StringVar(&o.aliases, "aliases", "", "--target: write the lists as an aliases(5) FILE (members in :include: files beside it)")
	fs.StringVar(&o.prepareCmd, "prepare-cmd", "", "--target: shell command to run after writing --aliases, e.g. newaliases")
	fs.DurationVar(&o.timeout, "timeout", defaultTimeout, "give up waiting for deliveries after this long")
	fs.DurationVar(&o.settle, "settle", defaultSettle, "keep counting this long after the last expected recipient, for late duplicates")
	fs.StringVar(&o.workDir, "work-dir", "", "directory for fanmail's data, config and log (default: a temporary one, removed)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary work directory")
	jsonOut := fs.Bool("json", false, "print the report as JSON instead of a table")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.setFlags = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.setFlags[f.Name] = true })
	if err := o.defaults(); err != nil {
		return err
	}
	o.log = slog.New(slog.NewTextHandler(stderr, nil))
	if !*quiet {
		o.progress = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := runBench(ctx, o)
	if r != nil {
		if *jsonOut {
			if werr := r.writeJSON(stdout); werr != nil {
				return werr
			}
		} else if werr := r.writeTable(stdout); werr != nil {
			return werr
		}
		if err == nil && !r.Complete {
			// The report is printed; the exit status tells scripts.
			return fmt.Errorf("incomplete run: %d of %d recipients delivered, %d posts failed", r.Delivered, r.Expected, r.PostsFailed)
		}
	}
	return err
}
