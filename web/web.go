// Package web is an edge of fanmail beside the pipeline: the built-in
// HTTP server of RFC 8058 one-click unsubscribe. A mail provider POSTs
// List-Unsubscribe=One-Click to the https://BASE/u/TOKEN link that
// delivery put in a member's copy; the server checks the token
// (package unsubscribe) and removes that member through the list store,
// at once. A GET of the same link, which link scanners make, only shows
// a page whose button makes the POST. The package owns no state.
//
// It speaks plain HTTP on [web] listen; TLS, which RFC 8058 requires of
// the link, is a reverse proxy's job in front of it. Every resource a
// client can make it spend is bounded: connections, header and body
// size, read, write and idle time, and requests per client and second.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/net/netutil"

	"fanmail/unsubscribe"
)

// Store removes members; *lists.Store is one. RemoveMembers returns how
// many of addrs were members, and an error wrapping lists.ErrNoList if
// the list does not exist.
type Store interface {
	RemoveMembers(ctx context.Context, list string, addrs []string) (removed int, err error)
}

// Config is the server's settings. A zero limit or timeout takes
// DefaultConfig's; TrustedProxies is taken as given.
type Config struct {
	Listen string // host:port
	// TrustedProxies are the peers whose X-Forwarded-For is believed:
	// the client of a request is the nearest address in it that is not
	// a trusted proxy. It decides the rate limit and the log's remote.
	TrustedProxies []netip.Prefix
	MaxConnections int     // open connections; more wait in the kernel's backlog
	RateLimit      float64 // requests per second per client (IPv4 address or IPv6 /64)
	RateBurst      int     // requests a client may make at once
	MaxClients     int     // clients the rate limiter remembers
	MaxHeaderBytes int     // request line and header
	MaxBodyBytes   int64   // a POST's body; RFC 8058's is 26 octets

	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration // the whole request, body included
	WriteTimeout      time.Duration // from the end of the request's header to the end of the reply
	IdleTimeout       time.Duration // between requests on a kept-alive connection
	StoreTimeout      time.Duration // one removal in the list store

	Logger *slog.Logger
}

// DefaultConfig is the server's defaults, which config shows under [web].
// The proxies trusted are the loopback addresses, where a reverse proxy
// on the same host connects from.
func DefaultConfig() Config {
	return Config{
		TrustedProxies:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		MaxConnections:    256,
		RateLimit:         10,
		RateBurst:         20,
		MaxClients:        10000,
		MaxHeaderBytes:    8 << 10,
		MaxBodyBytes:      8 << 10,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		StoreTimeout:      8 * time.Second,
	}
}

// withDefaults fills in zero limits from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&c.MaxConnections, d.MaxConnections)
	setInt(&c.RateBurst, d.RateBurst)
	setInt(&c.MaxClients, d.MaxClients)
	setInt(&c.MaxHeaderBytes, d.MaxHeaderBytes)
	if c.RateLimit <= 0 {
		c.RateLimit = d.RateLimit
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	setDur(&c.ReadHeaderTimeout, d.ReadHeaderTimeout)
	setDur(&c.ReadTimeout, d.ReadTimeout)
	setDur(&c.WriteTimeout, d.WriteTimeout)
	setDur(&c.IdleTimeout, d.IdleTimeout)
	setDur(&c.StoreTimeout, d.StoreTimeout)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server is the one-click unsubscribe endpoint.
type Server struct {
	cfg     Config
	keys    *unsubscribe.Keyring
	store   Store
	log     *slog.Logger
	limiter *limiter
	http    *http.Server
	ln      net.Listener
}

// New returns a server that verifies tokens with keys and removes
// members from store. Listen binds it; Serve serves.
func New(cfg Config, keys *unsubscribe.Keyring, store Store) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:     cfg,
		keys:    keys,
		store:   store,
		log:     cfg.Logger,
		limiter: newLimiter(cfg.RateLimit, cfg.RateBurst, cfg.MaxClients, time.Now),
	}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s
}

// Listen binds the listen address, so that a bad address or a port in
// use fails the start rather than the first request.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("web listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = netutil.LimitListener(ln, s.cfg.MaxConnections)
	return nil
}

// Addr is the bound address, once Listen has succeeded.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until Shutdown, then returns nil.
func (s *Server) Serve() error {
	if err := s.http.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("web server: %w", err)
	}
	return nil
}

// Shutdown stops accepting, lets requests in progress finish until ctx
// ends, and closes the listener and every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.http.Close())
	}
	if s.ln != nil {
		s.ln.Close() // Serve may never have run
	}
	return err
}
