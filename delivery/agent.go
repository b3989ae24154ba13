package delivery

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/miekg/dns"
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
	res         *Resolver
	dialer      net.Dialer
	log         *slog.Logger
	pool        *pool
	grey        *greylist
	lookups     chan struct{} // DNS lookups in flight (maxLookups)
	tlsSessions tls.ClientSessionCache
	tlsBroken   brokenTLS
	closed      atomic.Bool
	counters    counters // stats.go
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
	a := &Agent{
		cfg:         cfg,
		res:         res,
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
	a.res.closeIdle()
	return nil
}
