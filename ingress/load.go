package ingress

// Load control, after sendmail's QueueLA, DelayLA, RefuseLA and
// MaxDaemonChildren: fanmail must never accept mail faster than it can
// deliver it. Two signals are watched, the 1-minute load average and the
// number of recipients waiting in the spool, and each has three
// thresholds: queue only (accept, but leave delivery to the next queue
// run), delay (slow every transaction command down) and refuse (421 at
// connect). Beside them stand caps on open sessions, overall and per
// client, a cap on the rate of new connections per client (rate.go),
// and a floor of free disk space under the spool (Postfix's
// queue_minfree): below it new mail gets 452 4.3.1 instead of filling
// the disk.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Load is the load-control part of Config. Every threshold is off at 0;
// a threshold is reached when the signal is at or above it.
type Load struct {
	QueueLA  float64 // accept but only queue (sendmail QueueLA)
	DelayLA  float64 // sleep Delay before MAIL, RCPT and DATA replies (DelayLA)
	RefuseLA float64 // 421 at connect (RefuseLA)

	// The same three steps by pending recipients in the spool.
	QueueDepthQueue  int
	QueueDepthDelay  int
	QueueDepthRefuse int

	MaxSessions int           // open SMTP connections (sendmail MaxDaemonChildren)
	Delay       time.Duration // sendmail's pause per command; 0 takes DefaultConfig's (1s)

	// MaxSessionsPerClient caps the open connections of one client: an
	// IPv4 address, or an IPv6 /64, which one host usually has whole
	// (Postfix smtpd_client_connection_count_limit).
	MaxSessionsPerClient int

	// MaxConnectionRatePerClient caps the connections one client (as
	// for MaxSessionsPerClient) may open in ConnectionRateWindow, refused
	// ones included (Postfix smtpd_client_connection_rate_limit per
	// anvil_rate_time_unit); 0 is no cap (rate.go).
	MaxConnectionRatePerClient int
	ConnectionRateWindow       time.Duration // 0 takes DefaultConfig's (1m)
	// ConnectionRateExempt are the networks whose clients the rate cap
	// never counts (Postfix smtpd_client_event_limit_exceptions); relay
	// peers' networks (Config.Peers) are exempt as well.
	ConnectionRateExempt []netip.Prefix
	// Now is the connection-rate windows' clock; nil is time.Now.
	Now func() time.Time

	// MinFreeSpace is the floor of free bytes on every filesystem in
	// Spool (statfs; the space an unprivileged writer may use): below it
	// MAIL and DATA get 452 4.3.1, as does a MAIL whose SIZE would take
	// the disk below it.
	MinFreeSpace int64
	Spool        []string
	// FreeSpace returns the free bytes; nil takes the least over Spool.
	FreeSpace func() (int64, error)

	// LoadAvg returns the 1-minute load average; nil reads /proc/loadavg.
	LoadAvg func() (float64, error)
	// QueueDepth returns the pending recipients in the spool; nil turns
	// the depth thresholds off.
	QueueDepth func() int
	// Interval is how long one sample of both signals is reused, so a
	// busy server does not read /proc or walk the queue on every
	// command; 0 takes DefaultConfig's.
	Interval time.Duration
}

// loadState is a set of the overload conditions in force.
type loadState uint32

const (
	stateQueue loadState = 1 << iota
	stateDelay
	stateRefuse
	stateLowDisk // below MinFreeSpace: no new mail
)

// conditions names each state bit for the transition log lines.
var conditions = []struct {
	bit         loadState
	on, off     string
	la          func(Load) float64
	depth       func(Load) int
	laKey, dKey string
}{
	{stateRefuse, "overload: refusing connections", "overload cleared: accepting connections",
		func(l Load) float64 { return l.RefuseLA }, func(l Load) int { return l.QueueDepthRefuse }, "refuse_la", "queue_depth_refuse"},
	{stateDelay, "overload: delaying commands", "overload cleared: no longer delaying commands",
		func(l Load) float64 { return l.DelayLA }, func(l Load) int { return l.QueueDepthDelay }, "delay_la", "queue_depth_delay"},
	{stateQueue, "overload: accepting for the queue only", "overload cleared: delivering at once again",
		func(l Load) float64 { return l.QueueLA }, func(l Load) int { return l.QueueDepthQueue }, "queue_la", "queue_depth_queue"},
}

// loadMonitor samples the signals at most once per interval and keeps the
// resulting state in an atomic, so the common path is two atomic loads.
type loadMonitor struct {
	cfg      Load
	log      *slog.Logger
	useLA    bool
	useDepth bool
	useDisk  bool

	staleAt atomic.Int64 // unix nanoseconds after which the sample is resampled
	state   atomic.Uint32
	free    atomic.Int64 // free bytes at the last sample; -1 unknown

	mu      sync.Mutex // one resample at a time; guards loadErr and diskErr
	loadErr bool       // the last LoadAvg call failed (logged once)
	diskErr bool       // the last FreeSpace call failed (logged once)
}

func newLoadMonitor(cfg Load, log *slog.Logger) *loadMonitor {
	def := DefaultConfig().Load
	if cfg.Delay == 0 {
		cfg.Delay = def.Delay
	}
	if cfg.Interval == 0 {
		cfg.Interval = def.Interval
	}
	if cfg.LoadAvg == nil {
		cfg.LoadAvg = func() (float64, error) { return readLoadAvg("/proc/loadavg") }
	}
	if cfg.FreeSpace == nil {
		dirs := cfg.Spool
		cfg.FreeSpace = func() (int64, error) { return freeSpace(dirs) }
	}
	m := &loadMonitor{cfg: cfg, log: log,
		useLA:    cfg.QueueLA > 0 || cfg.DelayLA > 0 || cfg.RefuseLA > 0,
		useDepth: cfg.QueueDepth != nil && (cfg.QueueDepthQueue > 0 || cfg.QueueDepthDelay > 0 || cfg.QueueDepthRefuse > 0),
		useDisk:  cfg.MinFreeSpace > 0,
	}
	m.free.Store(-1)
	return m
}

// current returns the overload state, resampling when the last sample
// is older than the interval.
func (m *loadMonitor) current() loadState {
	if !m.useLA && !m.useDepth && !m.useDisk {
		return 0
	}
	if time.Now().UnixNano() < m.staleAt.Load() {
		return loadState(m.state.Load())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if now.UnixNano() < m.staleAt.Load() {
		return loadState(m.state.Load()) // another caller just resampled
	}
	m.sample()
	m.staleAt.Store(now.Add(m.cfg.Interval).UnixNano())
	return loadState(m.state.Load())
}

// sample reads both signals and logs every condition that starts or
// stops; it runs with m.mu held.
func (m *loadMonitor) sample() {
	load, depth := -1.0, -1
	if m.useLA {
		v, err := m.cfg.LoadAvg()
		if m.readable(&m.loadErr, err, "cannot read the load average; load thresholds are off until it can be read",
			"load average readable again", "load", v) {
			load = v
		}
	}
	if m.useDepth {
		depth = m.cfg.QueueDepth()
	}

	var next loadState
	for _, c := range conditions {
		if la := c.la(m.cfg); la > 0 && load >= la {
			next |= c.bit
		}
		if d := c.depth(m.cfg); d > 0 && depth >= d {
			next |= c.bit
		}
	}
	if m.useDisk && m.sampleDisk() {
		next |= stateLowDisk
	}
	prev := loadState(m.state.Swap(uint32(next)))
	if prev == next {
		return
	}
	if was, is := prev&stateLowDisk != 0, next&stateLowDisk != 0; was != is {
		attrs := []any{"free", m.free.Load(), "min_free_space", m.cfg.MinFreeSpace}
		if is {
			m.log.Warn("low disk space: refusing new mail", attrs...)
		} else {
			m.log.Info("disk space recovered: taking mail again", attrs...)
		}
	}
	for _, c := range conditions {
		was, is := prev&c.bit != 0, next&c.bit != 0
		if was == is {
			continue
		}
		var attrs []any
		if m.useLA {
			attrs = append(attrs, "load", load, c.laKey, c.la(m.cfg))
		}
		if m.useDepth {
			attrs = append(attrs, "depth", depth, c.dKey, c.depth(m.cfg))
		}
		if is {
			m.log.Warn(c.on, attrs...)
		} else {
			m.log.Info(c.off, attrs...)
		}
	}
}

// sampleDisk reads the free space and reports whether it is below the
// floor; it runs with m.mu held. A filesystem that cannot be read turns
// the floor off until it can, logged once: enqueueing will say more.
func (m *loadMonitor) sampleDisk() bool {
	free, err := m.cfg.FreeSpace()
	if !m.readable(&m.diskErr, err, "cannot read the spool's free space; min_free_space is off until it can be read",
		"spool free space readable again", "free", free) {
		m.free.Store(-1)
		return false
	}
	m.free.Store(free)
	return free < m.cfg.MinFreeSpace
}

// readable reports whether a signal was read (err is nil), logging only
// the changes: the first failure (unreadable), with err, and the first
// success after failures (again, with the value's attrs). *failing keeps
// the last outcome between samples; it runs with m.mu held.
func (m *loadMonitor) readable(failing *bool, err error, unreadable, again string, attrs ...any) bool {
	switch {
	case err != nil && !*failing:
		m.log.Warn(unreadable, "err", err)
	case err == nil && *failing:
		m.log.Info(again, attrs...)
	}
	*failing = err != nil
	return err == nil
}

// lowDisk reports whether new mail must wait for disk space: the free
// space is below the floor, or a message of size bytes (SIZE=, 0 when
// not declared) would take it there.
func (m *loadMonitor) lowDisk(size int64) bool {
	if m.current()&stateLowDisk != 0 {
		return true
	}
	free := m.free.Load()
	return m.useDisk && size > 0 && free >= 0 && free-size < m.cfg.MinFreeSpace
}

// freeSpace returns the least space available to an unprivileged writer
// over dirs' filesystems.
func freeSpace(dirs []string) (int64, error) {
	least := int64(-1)
	for _, d := range dirs {
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err != nil {
			return 0, fmt.Errorf("statfs %s: %w", d, err)
		}
		if free := int64(st.Bavail) * st.Bsize; least < 0 || free < least {
			least = free
		}
	}
	if least < 0 {
		return 0, errors.New("no spool directory to measure")
	}
	return least, nil
}

// pace sleeps before a MAIL, RCPT or DATA reply while the delay
// threshold is reached (sendmail DelayLA).
func (m *loadMonitor) pace() {
	if m.current()&stateDelay != 0 {
		time.Sleep(m.cfg.Delay)
	}
}

// readLoadAvg returns the 1-minute load average, the first field of
// /proc/loadavg ("0.57 0.92 0.72 1/107 17808").
func readLoadAvg(path string) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read load average: %w", err)
	}
	first, _, _ := bytes.Cut(bytes.TrimSpace(data), []byte(" "))
	v, err := strconv.ParseFloat(string(first), 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("read load average: %s: unexpected contents %q", path, first)
	}
	return v, nil
}

// rejectTimeout bounds writing a 421 to a connection being turned away.
const rejectTimeout = 10 * time.Second

// loadListener answers 421 at connect while the server is refusing or
// full, overall or for the connecting client, or while the client is
// over its connection rate. go-smtp only calls the backend at EHLO,
// after its own 220, so a greeting-time refusal has to happen here,
// before go-smtp sees the connection.
type loadListener struct {
	net.Listener
	s *Server

	sessions atomic.Int64 // connections handed to go-smtp and not yet closed
	full     atomic.Bool  // max_sessions reached; for transition logging
	rejects  sync.WaitGroup
	rate     *rateLimiter // nil: no connection-rate cap

	mu      sync.Mutex
	clients map[string]*clientSessions // by clientKey; only clients with open sessions
}

// clientSessions is one client's open sessions.
type clientSessions struct {
	n      int
	warned bool // its refusal is logged once per time it reaches the cap
}

func (l *loadListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s := l.s
		if s.load.current()&stateRefuse != 0 {
			l.reject(c, "overload", "4.3.2", "Service temporarily unavailable, system overloaded; try again later")
			continue
		}
		limit := int64(s.cfg.Load.MaxSessions)
		// Only this goroutine adds, so the check cannot overshoot.
		if n := l.sessions.Load(); limit > 0 && n >= limit {
			if !l.full.Swap(true) {
				s.log.Warn("overload: too many sessions, refusing connections", "sessions", n, "max_sessions", limit)
			}
			l.reject(c, "max_sessions", "4.3.2", "Service temporarily unavailable, too many sessions; try again later")
			continue
		}
		key := clientKey(c.RemoteAddr())
		// Before the session cap, so that every attempt counts, as in
		// Postfix; both refusals read alike, as they do there.
		if l.rate != nil && !l.rate.exempted(c.RemoteAddr()) && !l.rate.allow(key) {
			l.reject(c, "max_connection_rate_per_client", "4.7.0", "Error: too many connections from "+key)
			continue
		}
		if !l.admit(key) {
			// Postfix's words for its per-client cap.
			l.reject(c, "max_sessions_per_client", "4.7.0", "Error: too many connections from "+key)
			continue
		}
		l.sessions.Add(1)
		s.counters.sessionsTotal.Add(1)
		g := &guardConn{Conn: c, l: l, client: key, remote: c.RemoteAddr().String(),
			end: time.Now().Add(s.cfg.SessionTimeout)}
		_ = g.SetDeadline(time.Time{}) // the lifetime, until go-smtp sets its own
		return g, nil
	}
}

// admit counts a new session for client, or reports that it has as many
// as max_sessions_per_client allows.
func (l *loadListener) admit(client string) bool {
	limit := l.s.cfg.Load.MaxSessionsPerClient
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := l.clients[client]
	if cs == nil {
		cs = &clientSessions{}
		l.clients[client] = cs
	}
	if limit > 0 && cs.n >= limit {
		if !cs.warned {
			cs.warned = true
			l.s.log.Warn("too many sessions from one client, refusing its connections", "client", client,
				"sessions", cs.n, "max_sessions_per_client", limit)
		}
		return false
	}
	cs.n++
	return true
}

// release gives back a session slot, overall and for its client.
func (l *loadListener) release(client string) {
	l.mu.Lock()
	if cs := l.clients[client]; cs != nil {
		if cs.n--; cs.n <= 0 {
			delete(l.clients, client)
		} else if cs.n < l.s.cfg.Load.MaxSessionsPerClient {
			cs.warned = false
		}
	}
	l.mu.Unlock()
	n := l.sessions.Add(-1)
	if limit := int64(l.s.cfg.Load.MaxSessions); n < limit && l.full.CompareAndSwap(true, false) {
		l.s.log.Info("overload cleared: below max_sessions, accepting connections", "sessions", n, "max_sessions", limit)
	}
}

// clientKey names the client a connection counts against: its IPv4
// address, or the /64 of its IPv6 address, since one host usually holds
// a whole /64 and could otherwise open sessions from each address in it.
func clientKey(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ip4 := tcp.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return (&net.IPNet{IP: tcp.IP.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

// reject counts and logs the refusal (reason, for the metrics), sends
// the 421 greeting and closes. Clients must wait for the greeting before
// speaking (RFC 5321 §3.1), so nothing unread is pending and the close
// does not reset the connection under the reply.
func (l *loadListener) reject(c net.Conn, reason, enhanced, text string) {
	l.s.refused(reason, clientKey(c.RemoteAddr()))
	host := l.s.cfg.Hostname
	if host == "" {
		host = "localhost"
	}
	l.rejects.Add(1)
	go func() {
		defer l.rejects.Done()
		defer c.Close()
		_ = c.SetWriteDeadline(time.Now().Add(rejectTimeout))
		_, _ = io.WriteString(c, fmt.Sprintf("421 %s %s %s\r\n", enhanced, host, text))
	}()
}
