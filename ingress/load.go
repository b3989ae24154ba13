package ingress

// Load control, after sendmail's QueueLA, DelayLA, RefuseLA and
// MaxDaemonChildren: fanmail must never accept mail faster than it can
// deliver it. Two signals are watched, the 1-minute load average and the
// number of recipients waiting in the spool, and each has three
// thresholds: queue only (accept, but leave delivery to the next queue
// run), delay (slow every transaction command down) and refuse (421 at
// connect). A cap on open sessions stands beside them.

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
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

	staleAt atomic.Int64 // unix nanoseconds after which the sample is resampled
	state   atomic.Uint32

	mu      sync.Mutex // one resample at a time; guards loadErr
	loadErr bool       // the last LoadAvg call failed (logged once)
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
	return &loadMonitor{cfg: cfg, log: log,
		useLA:    cfg.QueueLA > 0 || cfg.DelayLA > 0 || cfg.RefuseLA > 0,
		useDepth: cfg.QueueDepth != nil && (cfg.QueueDepthQueue > 0 || cfg.QueueDepthDelay > 0 || cfg.QueueDepthRefuse > 0),
	}
}

// current returns the overload state, resampling when the last sample
// is older than the interval.
func (m *loadMonitor) current() loadState {
	if !m.useLA && !m.useDepth {
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
		switch {
		case err != nil && !m.loadErr:
			m.log.Warn("cannot read the load average; load thresholds are off until it can be read", "err", err)
		case err == nil && m.loadErr:
			m.log.Info("load average readable again", "load", v)
		}
		m.loadErr = err != nil
		if err == nil {
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
	prev := loadState(m.state.Swap(uint32(next)))
	if prev == next {
		return
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
// full. go-smtp only calls the backend at EHLO, after its own 220, so a
// greeting-time refusal has to happen here, before go-smtp sees the
// connection.
type loadListener struct {
	net.Listener
	s *Server

	sessions atomic.Int64 // connections handed to go-smtp and not yet closed
	full     atomic.Bool  // max_sessions reached; for transition logging
	rejects  sync.WaitGroup
}

func (l *loadListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s := l.s
		if s.load.current()&stateRefuse != 0 {
			l.reject(c, "overload", "Service temporarily unavailable, system overloaded; try again later")
			continue
		}
		limit := int64(s.cfg.Load.MaxSessions)
		// Only this goroutine adds, so the check cannot overshoot.
		if n := l.sessions.Load(); limit > 0 && n >= limit {
			if !l.full.Swap(true) {
				s.log.Warn("overload: too many sessions, refusing connections", "sessions", n, "max_sessions", limit)
			}
			l.reject(c, "max_sessions", "Service temporarily unavailable, too many sessions; try again later")
			continue
		}
		l.sessions.Add(1)
		s.counters.sessionsTotal.Add(1)
		return &sessionConn{Conn: c, l: l}, nil
	}
}

// reject counts and logs the refusal, sends the 421 greeting and closes. Clients must wait for the
// greeting before speaking (RFC 5321 §3.1), so nothing unread is pending
// and the close does not reset the connection under the reply.
func (l *loadListener) reject(c net.Conn, reason, text string) {
	client := ""
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		client = a.IP.String()
	}
	l.s.refused(reason, client)
	host := l.s.cfg.Hostname
	if host == "" {
		host = "localhost"
	}
	l.rejects.Add(1)
	go func() {
		defer l.rejects.Done()
		defer c.Close()
		_ = c.SetWriteDeadline(time.Now().Add(rejectTimeout))
		_, _ = io.WriteString(c, fmt.Sprintf("421 4.3.2 %s %s\r\n", host, text))
	}()
}

// sessionConn gives its session slot back exactly once, when go-smtp (or
// Shutdown) closes it.
type sessionConn struct {
	net.Conn
	l    *loadListener
	once sync.Once
}

func (c *sessionConn) Close() error {
	c.once.Do(func() {
		n := c.l.sessions.Add(-1)
		if limit := int64(c.l.s.cfg.Load.MaxSessions); n < limit && c.l.full.CompareAndSwap(true, false) {
			c.l.s.log.Info("overload cleared: below max_sessions, accepting connections", "sessions", n, "max_sessions", limit)
		}
	})
	return c.Conn.Close()
}
