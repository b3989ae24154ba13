package delivery

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	"fanmail/resolver"
)

// maxAddrs caps the addresses tried per envelope, so a domain listing
// dozens of dead MX hosts cannot hold a delivery slot for long (Postfix's
// smtp_mx_address_limit is 5 too).
const maxAddrs = 5

// Agent delivers envelopes. It is safe for concurrent use; its resolver
// cache, connection cache, MX group state and TLS session cache are
// shared by every Deliver call.
type Agent struct {
	cfg         Config
	res         *resolver.Resolver
	ownRes      bool // res was opened by New, so Close closes it
	dialer      net.Dialer
	log         *slog.Logger
	pool        *pool
	grey        *greylist
	lookups     chan struct{} // DNS lookups in flight (maxLookups)
	tlsSessions tls.ClientSessionCache
	tlsBroken   brokenTLS
	sources     sources // egress address pools by queue group (sources.go)
	closed      atomic.Bool
	counters    counters // stats.go
}

// New validates cfg, fills in defaults, and returns an Agent.
func New(cfg Config) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("delivery config: %w", err)
	}
	res, ownRes := cfg.Resolver, false
	if res == nil {
		if res, err = openResolver(cfg); err != nil {
			return nil, fmt.Errorf("delivery config: %w", err)
		}
		ownRes = true
	}
	srcs, err := newSources(cfg.Sources)
	if err != nil {
		if ownRes {
			res.Close()
		}
		return nil, fmt.Errorf("delivery config: %w", err)
	}
	a := &Agent{
		sources:     srcs,
		cfg:         cfg,
		res:         res,
		ownRes:      ownRes,
		dialer:      net.Dialer{Timeout: cfg.ConnectTimeout},
		log:         cfg.Logger,
		grey:        newGreylist(),
		lookups:     make(chan struct{}, maxLookups),
		tlsSessions: tls.NewLRUClientSessionCache(tlsSessionCacheSize),
	}
	a.pool = newPool(&a.cfg)
	return a, nil
}

// maxLookups bounds the DNS lookups delivery has in flight at once. A
// big fan-out starts thousands of new domains together; unbounded, their
// queries arrive at the resolver in one burst, overflow its socket
// buffer and come back as timeouts, each deferring an envelope for the
// queue's backoff.
const maxLookups = 128

// tlsSessionCacheSize bounds the TLS sessions kept for resumption.
const tlsSessionCacheSize = 1024

// Close releases the Agent: cached connections get QUIT and Deliver calls
// after it defer every recipient.
func (a *Agent) Close() error {
	a.closed.Store(true)
	a.pool.close()
	if a.ownRes {
		a.res.Close()
	}
	return nil
}

// NewResolver opens the resolver cfg describes (Resolvers, else the
// nameservers of ResolvConf; DNSTimeout per query), with delivery's
// defaults for what cfg leaves out. The caller owns it: it may share it
// with other users of the DNS through Config.Resolver, and closes it
// after the Agent.
func NewResolver(cfg Config) (*resolver.Resolver, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("delivery config: %w", err)
	}
	return openResolver(cfg)
}

// openResolver opens the resolver of a cfg whose defaults are filled.
func openResolver(cfg Config) (*resolver.Resolver, error) {
	servers := cfg.Resolvers
	if len(servers) == 0 {
		var err error
		if servers, err = resolver.ServersFromResolvConf(cfg.ResolvConf); err != nil {
			return nil, err
		}
	}
	return resolver.New(resolver.Config{Servers: servers, Timeout: cfg.DNSTimeout})
}
