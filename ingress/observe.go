package ingress

// What an operator sees of the listener: counters (Stats, which the
// metrics endpoint and fanmail status read) and log lines for every
// refusal, rate-limited so that a flood of bad RCPTs cannot flood the
// log too.

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of the listener's counters since it started.
type Stats struct {
	Sessions      int64 // SMTP sessions open now
	SessionsTotal int64 // sessions handed to the SMTP server since start
	Accepted      int64 // posts answered 250 after DATA
	// Rejected counts refused commands by command and reason, e.g.
	// {"RCPT", "unknown_recipient"} or {"DATA", "loop"}.
	Rejected map[Rejection]int64
	// Refused counts sessions turned away with 421 before the SMTP
	// greeting, by reason ("overload", "max_sessions",
	// "max_sessions_per_client", "max_connection_rate_per_client"), or
	// cut short ("too_many_errors",
	// "starttls_pipelining").
	Refused map[string]int64
	// BytesIn and BytesOut count the SMTP dialogue, commands and
	// messages in, replies out, as plaintext (under TLS too).
	BytesIn, BytesOut int64
}

// Rejection names one kind of refused command.
type Rejection struct {
	Command string // MAIL, RCPT, DATA
	Reason  string
}

// counters are the listener's live counts behind Stats.
type counters struct {
	sessionsTotal atomic.Int64
	accepted      atomic.Int64
	bytesIn       atomic.Int64
	bytesOut      atomic.Int64

	mu       sync.Mutex
	rejected map[Rejection]int64
	refused  map[string]int64
}

// Stats returns the listener's counters.
func (s *Server) Stats() Stats {
	c := &s.counters
	st := Stats{SessionsTotal: c.sessionsTotal.Load(), Accepted: c.accepted.Load(),
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load()}
	if s.ln != nil {
		st.Sessions = s.ln.sessions.Load()
	}
	c.mu.Lock()
	st.Rejected = maps.Clone(c.rejected)
	st.Refused = maps.Clone(c.refused)
	c.mu.Unlock()
	if st.Rejected == nil {
		st.Rejected = map[Rejection]int64{}
	}
	if st.Refused == nil {
		st.Refused = map[string]int64{}
	}
	return st
}

// rejected counts a refused command and logs it (rate-limited) with the
// session's client and attrs.
func (ss *session) rejected(command, reason string, attrs ...any) {
	s := ss.srv
	s.countRejected(command, reason)
	s.refusals.log(slog.LevelInfo, "rejected", append([]any{"command", command, "reason", reason,
		"client", ss.remote, "helo", ss.conn.Hostname()}, attrs...)...)
}

// countRejected counts a refused command; rejected also logs it, the
// temporary failures have their own error line.
func (s *Server) countRejected(command, reason string) {
	s.counters.mu.Lock()
	if s.counters.rejected == nil {
		s.counters.rejected = map[Rejection]int64{}
	}
	s.counters.rejected[Rejection{command, reason}]++
	s.counters.mu.Unlock()
}

// refused counts a connection turned away at connect and logs it
// (rate-limited).
func (s *Server) refused(reason, client string) {
	s.countRefused(reason)
	s.refusals.log(slog.LevelInfo, "connection refused", "reason", reason, "client", client)
}

// countRefused counts a session turned away or cut short; refused also
// logs it, the session guard logs its own cuts.
func (s *Server) countRefused(reason string) {
	s.counters.mu.Lock()
	if s.counters.refused == nil {
		s.counters.refused = map[string]int64{}
	}
	s.counters.refused[reason]++
	s.counters.mu.Unlock()
}

// rateLog passes at most perSecond lines each second and counts the
// rest; the first line it lets through after dropping some says how
// many were dropped. Under a dictionary attack the log keeps a sample
// and a count instead of one line per guess.
type rateLog struct {
	out       *slog.Logger
	perSecond int
	now       func() time.Time // nil: time.Now

	mu      sync.Mutex
	second  int64 // unix second of the current window
	n       int   // lines passed in it
	dropped int   // lines dropped since the last one passed
}

func (r *rateLog) log(level slog.Level, msg string, args ...any) {
	clock := r.now
	if clock == nil {
		clock = time.Now
	}
	now := clock().Unix()
	r.mu.Lock()
	if now != r.second {
		r.second, r.n = now, 0
	}
	if r.n >= r.perSecond {
		r.dropped++
		r.mu.Unlock()
		return
	}
	r.n++
	dropped := r.dropped
	r.dropped = 0
	r.mu.Unlock()
	if dropped > 0 {
		args = append(args, "suppressed_before", dropped)
	}
	r.out.Log(context.Background(), level, msg, args...)
}

// finishID bounds what a log line copies of whatever was sent.
func finishID(v string) string {
	const maxLen = 256
	return v[:min(len(v), maxLen)]
}
