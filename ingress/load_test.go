package ingress

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/testutil"
	"fanmail/queuegroups"
)

// modeRecorder is the real queue plus a record of the delivery mode each
// message was enqueued with.
type modeRecorder struct {
	*queuegroups.Queue
	mu       sync.Mutex
	modes    []queuegroups.DeliveryMode
	prefixes [][]byte // each part's prefix (the headers fanmail adds), in order
	bodies   [][]byte // each message's body as received
	utf8     []bool   // each message's SMTPUTF8
}

func (r *modeRecorder) Enqueue(ctx context.Context, m *queuegroups.Message) error {
	r.mu.Lock()
	r.modes = append(r.modes, m.Mode)
	for _, p := range m.Parts {
		r.prefixes = append(r.prefixes, append([]byte(nil), p.Prefix...))
	}
	body := make([]byte, m.Body.Size())
	_, _ = m.Body.ReadAt(body, 0)
	r.bodies = append(r.bodies, body)
	r.utf8 = append(r.utf8, m.SMTPUTF8)
	r.mu.Unlock()
	return r.Queue.Enqueue(ctx, m)
}

func (r *modeRecorder) allPrefixes() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.prefixes...)
}

func (r *modeRecorder) allBodies() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...)
}

func (r *modeRecorder) allUTF8() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.utf8...)
}

func (r *modeRecorder) all() []queuegroups.DeliveryMode {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]queuegroups.DeliveryMode(nil), r.modes...)
}

// signals are the injected load average and queue depth, changeable while
// the server runs.
type signals struct {
	load  atomic.Int64 // load average × 100
	depth atomic.Int64
}

func newSignals(load float64, depth int) *signals {
	s := &signals{}
	s.set(load, depth)
	return s
}

func (s *signals) set(load float64, depth int) {
	s.load.Store(int64(load * 100))
	s.depth.Store(int64(depth))
}

func (s *signals) loadAvg() (float64, error) { return float64(s.load.Load()) / 100, nil }
func (s *signals) queueDepth() int           { return int(s.depth.Load()) }

// syncBuffer collects log output written from server goroutines.
type syncBuffer struct{ testutil.SyncBuffer }

// count returns how many log lines carry msg.
func (b *syncBuffer) count(msg string) int {
	return strings.Count(b.String(), `msg="`+msg+`"`)
}

func (b *syncBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// greet connects and says EHLO; err is the refusal, if any.
func greet(t *testing.T, addr string) (*smtp.Client, error) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.Hello("client.example.org")
}

// wantRefused checks for the 421 4.3.2 greeting naming the server.
func wantRefused(t *testing.T, err error, text string) {
	t.Helper()
	wantReply(t, "greeting", err, 421, smtp.EnhancedCode{4, 3, 2})
	var se *smtp.SMTPError
	if errors.As(err, &se) && (!strings.Contains(se.Message, "fanmail.test") || !strings.Contains(se.Message, text)) {
		t.Errorf("421 text %q, want the hostname and %q", se.Message, text)
	}
}

// timed runs f and returns how long it took and its error.
func timed(f func() error) (time.Duration, error) {
	t0 := time.Now()
	err := f()
	return time.Since(t0), err
}

func TestLoadThresholds(t *testing.T) {
	t.Parallel()
	const delay = 150 * time.Millisecond
	type want int
	const (
		accept want = iota // delivered at once
		queue              // accepted for the queue only
		slow               // MAIL, RCPT and DATA each answered after delay
		refuse             // 421 4.3.2 at connect
	)
	tests := []struct {
		name  string
		load  Load
		la    float64
		depth int
		want  want
	}{
		{"below every threshold", Load{QueueLA: 8, DelayLA: 10, RefuseLA: 12,
			QueueDepthQueue: 100, QueueDepthDelay: 200, QueueDepthRefuse: 300}, 7.9, 99, accept},
		{"all thresholds off", Load{}, 1000, 1 << 30, accept},
		{"queue_la", Load{QueueLA: 8, RefuseLA: 12}, 8, 0, queue},
		{"queue_depth_queue", Load{QueueDepthQueue: 100, QueueDepthRefuse: 300}, 0, 100, queue},
		{"delay_la", Load{DelayLA: 4}, 4.5, 0, slow},
		{"queue_depth_delay", Load{QueueDepthDelay: 200}, 0, 250, slow},
		{"refuse_la", Load{QueueLA: 8, RefuseLA: 12}, 12, 0, refuse},
		{"queue_depth_refuse", Load{QueueDepthQueue: 100, QueueDepthRefuse: 300}, 0, 300, refuse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := newSignals(tt.la, tt.depth)
			tt.load.LoadAvg, tt.load.QueueDepth, tt.load.Delay = sig.loadAvg, sig.queueDepth, delay
			f := startWith(t, Config{MaxMessageSize: 1 << 20, Load: tt.load})
			c, err := greet(t, f.addr)
			if tt.want == refuse {
				wantRefused(t, err, "system overloaded")
				if s := f.queue.Stats(); s.Messages != 0 {
					t.Errorf("refused connection queued %d messages", s.Messages)
				}
				return
			}
			if err != nil {
				t.Fatalf("EHLO: %v", err)
			}
			var w interface {
				Write([]byte) (int, error)
				Close() error
			}
			steps := []struct {
				cmd string
				run func() error
			}{
				{"MAIL", func() error { return c.Mail("poster@example.org", nil) }},
				{"RCPT", func() error { return c.Rcpt("announce@lists.example.org", nil) }},
				{"DATA", func() (err error) {
					if w, err = c.Data(); err != nil {
						return err
					}
					if _, err := w.Write([]byte(post)); err != nil {
						return err
					}
					return w.Close()
				}},
			}
			for _, st := range steps {
				took, err := timed(st.run)
				if err != nil {
					t.Fatalf("%s: %v", st.cmd, err)
				}
				// A lower bound only: a loaded machine may always be slower.
				if tt.want == slow && took < delay {
					t.Errorf("%s answered after %v, want at least %v", st.cmd, took, delay)
				}
			}
			wantMode := queuegroups.ModeDefault
			if tt.want == queue {
				wantMode = queuegroups.ModeQueue
			}
			if got := f.modes.all(); len(got) != 1 || got[0] != wantMode {
				t.Errorf("enqueued modes %v, want [%v]", got, wantMode)
			}
		})
	}
}

func TestMaxSessions(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	f := startWith(t, Config{MaxMessageSize: 1 << 20, Logger: logs.logger(), Load: Load{MaxSessions: 2}})
	first, err := greet(t, f.addr)
	if err != nil {
		t.Fatalf("session 1: %v", err)
	}
	if _, err := greet(t, f.addr); err != nil {
		t.Fatalf("session 2: %v", err)
	}
	for range 3 {
		_, err := greet(t, f.addr)
		wantRefused(t, err, "too many sessions")
	}
	if n := logs.count("overload: too many sessions, refusing connections"); n != 1 {
		t.Errorf("%d overload lines for 3 refused connections, want 1", n)
	}

	if err := first.Quit(); err != nil {
		t.Fatal(err)
	}
	// The server sees the QUIT and closes its side a moment later.
	var c *smtp.Client
	if !testutil.Poll(5*time.Second, 20*time.Millisecond, func() bool {
		c, err = greet(t, f.addr)
		return err == nil
	}) {
		t.Fatalf("no session accepted after one closed: %v", err)
	}
	if err := c.SendMail("poster@example.org", []string{"announce@lists.example.org"}, strings.NewReader(post)); err != nil {
		t.Fatalf("post in the freed session: %v", err)
	}
	if n := logs.count("overload cleared: below max_sessions, accepting connections"); n != 1 {
		t.Errorf("%d cleared lines, want 1", n)
	}
}

// TestOverloadLoggedOncePerTransition makes five connections while
// refusing and expects one warning, then one line when it clears.
func TestOverloadLoggedOncePerTransition(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	sig := newSignals(20, 0)
	f := startWith(t, Config{MaxMessageSize: 1 << 20, Logger: logs.logger(), Load: Load{
		RefuseLA: 12, LoadAvg: sig.loadAvg,
		Interval: time.Millisecond, // resample on every connection: the state, not the cache, must dedupe
	}})
	for range 5 {
		_, err := greet(t, f.addr)
		wantRefused(t, err, "system overloaded")
		time.Sleep(2 * time.Millisecond)
	}
	if n := logs.count("overload: refusing connections"); n != 1 {
		t.Errorf("%d overload lines for 5 refused connections, want 1", n)
	}

	sig.set(1, 0)
	time.Sleep(5 * time.Millisecond)
	for range 3 {
		if _, err := greet(t, f.addr); err != nil {
			t.Fatalf("load back to 1: %v", err)
		}
	}
	if n := logs.count("overload cleared: accepting connections"); n != 1 {
		t.Errorf("%d cleared lines, want 1", n)
	}
	if n := logs.count("overload: refusing connections"); n != 1 {
		t.Errorf("%d overload lines after clearing, want still 1", n)
	}
}

// TestLoadSampleCached checks that concurrent commands share one sample
// per interval instead of reading /proc each time.
func TestLoadSampleCached(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	m := newLoadMonitor(Load{QueueLA: 8, Interval: time.Hour, LoadAvg: func() (float64, error) {
		calls.Add(1)
		return 9, nil
	}}, slog.New(slog.DiscardHandler))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if m.current()&stateQueue == 0 {
					t.Error("load 9 over queue_la 8 not seen")
					return
				}
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("LoadAvg called %d times within one interval, want 1", n)
	}
}

// An unreadable load average turns the load thresholds off, logged once.
func TestLoadAvgUnreadable(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	m := newLoadMonitor(Load{QueueLA: 1, RefuseLA: 2, Interval: time.Nanosecond,
		LoadAvg: func() (float64, error) { return 0, errors.New("no /proc") }}, logs.logger())
	for range 5 {
		if s := m.current(); s != 0 {
			t.Fatalf("state %b with no load average, want none", s)
		}
		time.Sleep(time.Microsecond)
	}
	if n := logs.count("cannot read the load average; load thresholds are off until it can be read"); n != 1 {
		t.Errorf("%d warnings for 5 failed reads, want 1", n)
	}
}

// A signal that cannot be read is logged when it starts failing and
// when it reads again, once each time, and its threshold holds only
// while it reads.
func TestSignalUnreadableThenReadable(t *testing.T) {
	t.Parallel()
	// Each sample's read fails or not; a good read is over the threshold.
	reads := []bool{false, false, true, true, false, true}
	for _, c := range []struct {
		name, unreadable, again string
		monitor                 func(ok func() bool, log *slog.Logger) *loadMonitor
		over                    loadState
	}{
		{"load average", "cannot read the load average; load thresholds are off until it can be read", "load average readable again",
			func(ok func() bool, log *slog.Logger) *loadMonitor {
				return newLoadMonitor(Load{RefuseLA: 2, Interval: time.Nanosecond, LoadAvg: func() (float64, error) {
					if ok() {
						return 9, nil
					}
					return 0, errors.New("no /proc")
				}}, log)
			}, stateRefuse},
		{"free space", "cannot read the spool's free space; min_free_space is off until it can be read", "spool free space readable again",
			func(ok func() bool, log *slog.Logger) *loadMonitor {
				return newLoadMonitor(Load{MinFreeSpace: 10 << 20, Interval: time.Nanosecond, FreeSpace: func() (int64, error) {
					if ok() {
						return 1 << 20, nil
					}
					return 0, errors.New("statfs: no such file")
				}}, log)
			}, stateLowDisk},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs syncBuffer
			i := 0
			m := c.monitor(func() bool { return reads[i] }, logs.logger())
			for ; i < len(reads); i++ {
				time.Sleep(time.Microsecond) // past the interval: each current() samples
				if got := m.current()&c.over != 0; got != reads[i] {
					t.Errorf("sample %d (read %v): over the threshold %v", i, reads[i], got)
				}
			}
			if n := logs.count(c.unreadable); n != 2 {
				t.Errorf("%d warnings for two spells of failed reads, want 2", n)
			}
			if n := logs.count(c.again); n != 2 {
				t.Errorf("%d recoveries logged for two, want 2", n)
			}
		})
	}
}

func TestReadLoadAvg(t *testing.T) {
	t.Parallel()
	t.Run("real /proc/loadavg", func(t *testing.T) {
		if _, err := os.Stat("/proc/loadavg"); err != nil {
			t.Skipf("no /proc/loadavg here: %v", err)
		}
		v, err := readLoadAvg("/proc/loadavg")
		if err != nil || v < 0 {
			t.Errorf("readLoadAvg = %v, %v; want a load average", v, err)
		}
	})
	dir := t.TempDir()
	tests := []struct {
		contents string
		want     float64
		ok       bool
	}{
		{"0.57 0.92 0.72 1/107 17808\n", 0.57, true},
		{"12.00 3.00 1.00 4/200 99\n", 12, true},
		{"", 0, false},
		{"busy 0.92 0.72 1/107 17808\n", 0, false},
		{"-1 0 0 1/1 1\n", 0, false},
	}
	for i, tt := range tests {
		path := filepath.Join(dir, "loadavg"+string(rune('a'+i)))
		if err := os.WriteFile(path, []byte(tt.contents), 0o644); err != nil {
			t.Fatal(err)
		}
		v, err := readLoadAvg(path)
		if (err == nil) != tt.ok || v != tt.want {
			t.Errorf("%q: got %v, %v; want %v (ok=%v)", tt.contents, v, err, tt.want, tt.ok)
		}
	}
	if _, err := readLoadAvg(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}
