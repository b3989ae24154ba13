// Package testutil holds the small helpers that the tests of several
// packages share; only _test.go files import it. The fake network the
// tests talk to is internal/fakenet.
package testutil

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"fanmail/lists"
)

// SyncBuffer is a buffer safe for concurrent use: a logger writes to it
// from server goroutines while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ListStore opens a list store at dir/lists.db, closed when the test
// ends, holding list, owned by owner, with members.
func ListStore(t testing.TB, dir, list, owner string, members ...string) *lists.Store {
	t.Helper()
	store, err := lists.Open(filepath.Join(dir, "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ctx := context.Background()
	if err := store.CreateList(ctx, list, owner); err != nil {
		t.Fatal(err)
	}
	if len(members) > 0 {
		if _, err := store.AddMembers(ctx, list, members); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// Clock is a clock the test moves instead of sleeping, safe for
// concurrent use: the code under test reads Now from its goroutines.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// DNSServer runs handler as a UDP DNS server on 127.0.0.1, stopped when
// the test ends, and returns its address. It is for tests that script
// the answers themselves (malformed, truncated, per query); a zone is
// simpler served by fakenet.DNS.
func DNSServer(t testing.TB, handler dns.HandlerFunc) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// RR parses a resource record in zone-file form, failing the test if it
// does not parse.
func RR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// OpenTempDir returns a new directory under the system's temporary
// directory with permissions mode, removed when the test ends, for tests
// where another user (nobody, a program the server runs) must reach it:
// t.TempDir's parent is private to the test's user.
func OpenTempDir(t testing.TB, pattern string, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// CopyFile copies the file src to dst with permissions mode, as tests do
// to give another user a binary or a config it may read.
func CopyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
}

// AcceptLoop accepts connections on ln and hands each to serve, on the
// one accepting goroutine, until the test ends and closes ln. A serve
// that talks for long starts its own goroutine.
func AcceptLoop(t testing.TB, ln net.Listener, serve func(net.Conn)) {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			serve(c)
		}
	}()
}

// SelfSigned returns a certificate made from tmpl and signed by its own
// fresh P-256 key, with the key and the parsed Leaf; tmpl says what it
// is for (names, usages, validity, serial).
func SelfSigned(t testing.TB, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// replyToRE matches a Reply-To field of one address as go-message writes
// it, "Reply-To: <addr>".
var replyToRE = regexp.MustCompile(`(?m)^Reply-To: <([^>\r\n]+)>\r?$`)

// ReplyTo returns the Reply-To address of the message msg, failing the
// test if it has none: the address a confirmation or a moderation
// request asks to be answered at.
func ReplyTo(t testing.TB, msg []byte) string {
	t.Helper()
	m := replyToRE.FindSubmatch(msg)
	if m == nil {
		t.Fatalf("no Reply-To in:\n%s", msg)
	}
	return string(m[1])
}

// Poll calls cond every interval until it returns true or within has
// passed, and reports whether it returned true. Tests wait this way for
// what a server does in its own goroutines, with no sleep long enough to
// be always right.
func Poll(within, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}

// WaitFor fails t unless cond holds within the given time, looking
// every 5ms; what names the awaited state in the failure.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(within, 5*time.Millisecond, cond) {
		t.Fatalf("timed out after %v waiting for %s", within, what)
	}
}

// InFlight counts the calls in progress at once, per key (a queue
// group, a destination) and in all, and the most there ever were: what
// a test of a concurrency cap checks. The zero value is ready to use.
type InFlight struct {
	mu      sync.Mutex
	now     map[string]int
	peak    map[string]int
	all     int
	peakAll int
}

// Enter counts one more call in progress under key.
func (f *InFlight) Enter(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.now == nil {
		f.now, f.peak = map[string]int{}, map[string]int{}
	}
	f.now[key]++
	f.all++
	f.peak[key] = max(f.peak[key], f.now[key])
	f.peakAll = max(f.peakAll, f.all)
}

// Leave counts a call under key as done.
func (f *InFlight) Leave(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now[key]--
	f.all--
}

// Now returns the calls in progress under key.
func (f *InFlight) Now(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now[key]
}

// All returns the calls in progress under every key together.
func (f *InFlight) All() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.all
}

// Peak returns the most calls there were in progress at once under key.
func (f *InFlight) Peak(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peak[key]
}

// PeakAll returns the most calls there were in progress at once in all.
func (f *InFlight) PeakAll() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peakAll
}
