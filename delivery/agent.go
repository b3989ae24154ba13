package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"
)

// maxAddrs caps the addresses tried per envelope, so a domain listing
// dozens of dead MX hosts cannot hold a delivery slot for long (Postfix's
// smtp_mx_address_limit is 5 too).
const maxAddrs = 5

// Agent delivers envelopes. It is safe for concurrent use; its resolver
// cache is shared by every Deliver call.
type Agent struct {
	cfg    Config
	res    *Resolver
	dialer net.Dialer
	log    *slog.Logger
	closed atomic.Bool
}

// New validates cfg, fills in defaults, and returns an Agent.
func New(cfg Config) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("delivery config: %w", err)
	}
	servers := cfg.Resolvers
	if len(servers) == 0 {
		cc, err := dns.ClientConfigFromFile(cfg.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("delivery config: read %s: %w", cfg.ResolvConf, err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
	}
	res, err := NewResolver(servers, cfg.DNSTimeout)
	if err != nil {
		return nil, fmt.Errorf("delivery config: %w", err)
	}
	return &Agent{
		cfg:    cfg,
		res:    res,
		dialer: net.Dialer{Timeout: cfg.ConnectTimeout},
		log:    cfg.Logger,
	}, nil
}

// Close releases the Agent; Deliver calls after it defer every recipient.
func (a *Agent) Close() error {
	a.closed.Store(true)
	return nil
}

// target is one address to try, with the name it came from for messages.
type target struct {
	host string // MX host name or route host
	addr string // host:port to dial
}

// Deliver makes one attempt at env and returns exactly one Result per
// env.Recipients entry, in the same order. It never returns early without
// a verdict: anything that is not a definite answer is Deferred.
func (a *Agent) Deliver(ctx context.Context, env Envelope) []Result {
	env.Domain = strings.ToLower(env.Domain)
	results := make([]Result, len(env.Recipients))
	for i, r := range env.Recipients {
		results[i].Recipient = r
	}
	if len(results) == 0 {
		return results
	}
	t := &txn{a: a, env: env, results: results}
	t.run(ctx)
	for _, r := range results {
		a.log.LogAttrs(ctx, slog.LevelInfo, "delivery",
			slog.String("qid", env.QueueID),
			slog.String("rcpt", r.Recipient),
			slog.String("domain", env.Domain),
			slog.String("relay", r.Relay),
			slog.Int("code", r.Code),
			slog.String("status", r.Status.String()),
			slog.String("reply", strings.TrimSpace(r.Enhanced+" "+r.Text)),
		)
	}
	return results
}

// txn is one Deliver call's state.
type txn struct {
	a       *Agent
	env     Envelope
	results []Result
}

// pending reports whether recipient i still awaits a verdict.
func (t *txn) pending(i int) bool { return t.results[i].Status == 0 }

// settle gives every recipient still pending the same verdict.
func (t *txn) settle(st Status, code int, enhanced, text, relay string) {
	for i := range t.results {
		if t.pending(i) {
			t.set(i, st, code, enhanced, text, relay)
		}
	}
}

func (t *txn) set(i int, st Status, code int, enhanced, text, relay string) {
	r := &t.results[i]
	r.Status, r.Code, r.Enhanced, r.Text, r.Relay = st, code, enhanced, text, relay
}

func (t *txn) run(ctx context.Context) {
	env := t.env
	switch {
	case t.a.closed.Load():
		t.settle(Deferred, 0, "4.3.2", "delivery agent is shut down", "")
		return
	case env.Domain == "" || env.Open == nil:
		t.settle(Deferred, 0, "4.3.0", "malformed envelope: no domain or no message", "")
		return
	case strings.ContainsAny(env.Sender, "\r\n<>"):
		t.settle(Failed, 0, "5.1.7", fmt.Sprintf("bad sender address syntax %q", env.Sender), "")
		return
	}
	for i, r := range env.Recipients {
		if r == "" || strings.ContainsAny(r, "\r\n<>") {
			t.set(i, Failed, 0, "5.1.3", fmt.Sprintf("bad recipient address syntax %q", r), "")
		}
	}

	if hp, ok := t.a.cfg.Routes[env.Domain]; ok {
		host, _, _ := net.SplitHostPort(hp)
		t.tryTargets(ctx, []target{{host: host, addr: hp}})
		return
	}
	hosts, err := t.a.res.LookupMX(ctx, env.Domain)
	switch {
	case errors.Is(err, ErrNullMX):
		t.settle(Failed, 0, "5.1.10", fmt.Sprintf("domain %s does not accept mail (null MX)", env.Domain), "")
		return
	case errors.Is(err, ErrNXDomain):
		t.settle(Failed, 0, "5.1.2", fmt.Sprintf("domain %s not found (NXDOMAIN)", env.Domain), "")
		return
	case err != nil:
		t.settle(Deferred, 0, "4.4.3", fmt.Sprintf("DNS lookup failed: %v", err), "")
		return
	}
	t.tryHosts(ctx, hosts)
}

// tryHosts resolves MX hosts one at a time, in order, so a working
// primary costs no lookups for the backups.
func (t *txn) tryHosts(ctx context.Context, hosts []MXHost) {
	var last *failure
	tried := 0
	for _, mx := range hosts {
		addrs, err := t.a.res.LookupA(ctx, mx.Host)
		switch {
		case err == nil:
		case mx.Implicit && (errors.Is(err, ErrNoAddress) || errors.Is(err, ErrNXDomain)):
			t.settle(Failed, 0, "5.4.4", fmt.Sprintf("domain %s has no MX and no address records", t.env.Domain), "")
			return
		case errors.Is(err, ErrNoAddress) || errors.Is(err, ErrNXDomain):
			last = &failure{enhanced: "4.4.4", text: fmt.Sprintf("MX host %s has no address: %v", mx.Host, err)}
			continue
		default:
			last = &failure{enhanced: "4.4.3", text: fmt.Sprintf("DNS lookup failed: %v", err)}
			continue
		}
		for _, ip := range addrs {
			if tried == maxAddrs || ctx.Err() != nil {
				break
			}
			tried++
			tg := target{host: mx.Host, addr: netip.AddrPortFrom(ip, uint16(t.a.cfg.Port)).String()}
			done, f := t.attempt(ctx, tg)
			if done {
				return
			}
			last = f
		}
	}
	t.giveUp(ctx, last)
}

// tryTargets is tryHosts for a static route: no lookups.
func (t *txn) tryTargets(ctx context.Context, targets []target) {
	var last *failure
	for _, tg := range targets {
		done, f := t.attempt(ctx, tg)
		if done {
			return
		}
		last = f
	}
	t.giveUp(ctx, last)
}

// giveUp defers everyone still pending when no host took the session,
// with the last host's reason. Its code may be a 5xx greeting: Status is
// the verdict, Code and Enhanced only report what the host said.
func (t *txn) giveUp(ctx context.Context, last *failure) {
	switch {
	case ctx.Err() != nil && (last == nil || last.code == 0):
		t.settle(Deferred, 0, "4.4.7", fmt.Sprintf("delivery interrupted: %v", ctx.Err()), "")
	case last != nil:
		t.settle(Deferred, last.code, last.enhanced, last.text, last.relay)
	default:
		t.settle(Deferred, 0, "4.4.4", fmt.Sprintf("no MX host of %s could be tried", t.env.Domain), "")
	}
}
