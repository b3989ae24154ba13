package ingress

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/internal/testutil"
)

// raw is a testutil.RawSMTP that fails its test when a send or a reply
// does.
type raw struct {
	t *testing.T
	*testutil.RawSMTP
}

// rawDial connects from the loopback address from ("" for any) and
// reads the greeting.
func rawDial(t *testing.T, addr, from string) (*raw, string) {
	t.Helper()
	s, greeting := testutil.DialRawSMTP(t, addr, from, 30*time.Second)
	return &raw{t: t, RawSMTP: s}, greeting
}

// dialServer starts a server with cfg, taking posts of up to 1 MiB,
// and connects to it.
func dialServer(t *testing.T, cfg Config) *raw {
	t.Helper()
	cfg.MaxMessageSize = 1 << 20
	r, _ := rawDial(t, startWith(t, cfg).addr, "")
	return r
}

// send writes lines, each ended with CRLF, in one write.
func (r *raw) send(lines ...string) {
	r.t.Helper()
	if _, err := io.WriteString(r.Conn, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		r.t.Fatalf("send %q: %v", lines[0], err)
	}
}

// cmd sends one line and returns its reply.
func (r *raw) cmd(line string) string {
	r.t.Helper()
	r.send(line)
	rep, err := r.Reply()
	if err != nil {
		r.t.Fatalf("%s: %v", line, err)
	}
	return rep
}

// wantClosed checks that the server has closed the connection.
func (r *raw) wantClosed() {
	r.t.Helper()
	if rep, err := r.Reply(); err == nil {
		r.t.Errorf("got %q, want the connection closed", rep)
	}
}

// replyCodes reads n replies and returns each as its code and enhanced
// code ("550 5.1.1"), or the whole line for a 421.
func (r *raw) replyCodes(n int) []string {
	r.t.Helper()
	var got []string
	for range n {
		rep, err := r.Reply()
		if err != nil {
			got = append(got, "closed")
			break
		}
		if !strings.HasPrefix(rep, "421") {
			rep = rep[:min(len(rep), 9)]
		}
		got = append(got, rep)
	}
	return got
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

const tooManyErrors = "421 4.7.0 fanmail.test Error: too many errors"

// Every rejected command is an error, whoever answers it; so is every
// command that moves no mail past the junk limit. At the error limit the
// client gets 421 4.7.0 and the connection closes.
func TestErrorLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   Config
		setup []string // sent one by one first
		cmd   string   // then sent until the server hangs up
		want  []string // the replies to cmd
	}{
		{"unknown recipients", Config{MaxErrors: 5},
			[]string{"EHLO client.example.org", "MAIL FROM:<poster@example.org>"},
			"RCPT TO:<nobody@lists.example.org>",
			append(repeat("550 5.1.1", 4), tooManyErrors)},
		{"sequence errors go-smtp answers itself", Config{MaxErrors: 3},
			[]string{"EHLO client.example.org"},
			"RCPT TO:<announce@lists.example.org>", // no MAIL
			append(repeat("502 5.5.1", 3), tooManyErrors)},
		{"MAIL before EHLO", Config{MaxErrors: 3},
			nil,
			"MAIL FROM:<poster@example.org>",
			append(repeat("502 5.5.1", 3), tooManyErrors)},
		{"NOOP loop", Config{MaxErrors: 2, MaxJunkCommands: 3},
			// EHLO is junk 1; NOOPs 2 and 3 are within the limit, 4 and 5 errors.
			[]string{"EHLO client.example.org"},
			"NOOP",
			append(repeat("250 2.0.0", 4), tooManyErrors)},
		{"RSET loop", Config{MaxErrors: 1, MaxJunkCommands: 2},
			[]string{"EHLO client.example.org"},
			"RSET",
			append(repeat("250 2.0.0", 2), tooManyErrors)},
		{"nested MAIL", Config{MaxErrors: 2},
			[]string{"EHLO client.example.org", "MAIL FROM:<poster@example.org>"},
			"MAIL FROM:<poster@example.org>",
			[]string{"503 5.5.1", tooManyErrors}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := dialServer(t, tt.cfg)
			for _, line := range tt.setup {
				if rep := r.cmd(line); rep[0] != '2' {
					t.Fatalf("%s: %s", line, rep)
				}
			}
			var got []string
			for range 50 {
				r.send(tt.cmd)
				rep, err := r.Reply()
				if err != nil {
					break
				}
				if !strings.HasPrefix(rep, "421") {
					rep = rep[:9]
				}
				got = append(got, rep)
				if strings.HasPrefix(rep, "421") {
					break
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("replies to %s (-want +got):\n%s", tt.cmd, diff)
			}
			r.wantClosed()
		})
	}
}

// A post accepted forgives the errors before it, as in Postfix.
func TestErrorsForgivenByPost(t *testing.T) {
	t.Parallel()
	r := dialServer(t, Config{MaxErrors: 3})
	r.cmd("EHLO client.example.org")
	for round := range 3 {
		r.cmd("MAIL FROM:<poster@example.org>")
		for range 2 {
			if rep := r.cmd("RCPT TO:<nobody@lists.example.org>"); !strings.HasPrefix(rep, "550") {
				t.Fatalf("round %d: unknown RCPT: %s", round, rep)
			}
		}
		r.cmd("RCPT TO:<announce@lists.example.org>")
		if rep := r.cmd("DATA"); !strings.HasPrefix(rep, "354") {
			t.Fatalf("round %d: DATA: %s", round, rep)
		}
		if rep := r.cmd(post + "."); !strings.HasPrefix(rep, "250 2.0.0 OK queued") {
			t.Fatalf("round %d: end of DATA: %s (two errors and a post each round must not reach 3)", round, rep)
		}
	}
}

// RCPTs count against the limit whether accepted or not; past it each
// gets 452 4.5.3, and past the overshoot allowance each is an error.
func TestRecipientLimit(t *testing.T) {
	t.Parallel()
	const known, unknown = "RCPT TO:<announce@lists.example.org>", "RCPT TO:<nobody@lists.example.org>"
	tests := []struct {
		name string
		cfg  Config
		cmds []string
		want []string
	}{
		{"rejected recipients count", Config{MaxRecipients: 3},
			[]string{unknown, unknown, unknown, known, "RSET", "MAIL FROM:<poster@example.org>", known},
			[]string{"550 5.1.1", "550 5.1.1", "550 5.1.1", "452 4.5.3", "250 2.0.0", "250 2.0.0", "250 2.0.0"}},
		{"overshoot past session's limit", Config{MaxRecipients: 3, RecipientOvershoot: 2, MaxErrors: 3},
			// one error, then two 452 allowed, then errors 2 and 3
			append([]string{unknown, known, known}, repeat(known, 5)...),
			[]string{"550 5.1.1", "250 2.0.0", "250 2.0.0", "452 4.5.3", "452 4.5.3", "452 4.5.3", tooManyErrors, "closed"}},
		{"overshoot past go-smtp's limit", Config{MaxRecipients: 3, RecipientOvershoot: 2, MaxErrors: 2},
			// all three accepted: go-smtp itself answers the fourth on
			repeat(known, 8),
			[]string{"250 2.0.0", "250 2.0.0", "250 2.0.0", "452 4.5.3", "452 4.5.3", "452 4.5.3",
				"452 4.5.3", tooManyErrors}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := dialServer(t, tt.cfg)
			r.cmd("EHLO client.example.org")
			r.cmd("MAIL FROM:<poster@example.org>")
			// Pipelined, as a client would send them.
			r.send(tt.cmds...)
			if diff := cmp.Diff(tt.want, r.replyCodes(len(tt.want))); diff != "" {
				t.Errorf("replies (-want +got):\n%s", diff)
			}
		})
	}
}

// Thousands of pipelined unknown RCPTs end at the error limit: the
// server answers those it read, closes, and looks nothing more up.
func TestPipelinedUnknownRecipients(t *testing.T) {
	t.Parallel()
	r := dialServer(t, Config{})
	r.cmd("EHLO client.example.org")
	r.cmd("MAIL FROM:<poster@example.org>")
	go func() {
		var b bytes.Buffer
		for i := range 20000 {
			fmt.Fprintf(&b, "RCPT TO:<nobody%d@lists.example.org>\r\n", i)
		}
		_, _ = r.Conn.Write(b.Bytes()) // fails once the server hangs up
	}()
	want := append(repeat("550 5.1.1", DefaultConfig().MaxErrors-1), tooManyErrors)
	if diff := cmp.Diff(want, r.replyCodes(len(want))); diff != "" {
		t.Errorf("replies (-want +got):\n%s", diff)
	}
	r.wantClosed()
}

func TestSessionLifetime(t *testing.T) {
	t.Parallel()
	const lifetime = 400 * time.Millisecond
	f := startWith(t, Config{MaxMessageSize: 1 << 20, SessionTimeout: lifetime})
	t0 := time.Now()
	r, _ := rawDial(t, f.addr, "")
	r.cmd("EHLO client.example.org")
	var last string
	for {
		r.send("NOOP")
		rep, err := r.Reply()
		if err != nil {
			break
		}
		last = rep
		if !strings.HasPrefix(rep, "250") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if took := time.Since(t0); took < lifetime {
		t.Errorf("session ended after %v, before its lifetime %v", took, lifetime)
	}
	if want := "421 4.4.2 fanmail.test Error: session time limit exceeded"; last != want {
		t.Errorf("last reply %q, want %q", last, want)
	}
	r.wantClosed()
}

func TestMaxSessionsPerClient(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	f := startWith(t, Config{MaxMessageSize: 1 << 20, Logger: logs.logger(), Load: Load{MaxSessionsPerClient: 2}})
	first, g := rawDial(t, f.addr, "127.0.0.2")
	if !strings.HasPrefix(g, "220") {
		t.Fatalf("session 1 from 127.0.0.2: %s", g)
	}
	if _, g := rawDial(t, f.addr, "127.0.0.2"); !strings.HasPrefix(g, "220") {
		t.Fatalf("session 2 from 127.0.0.2: %s", g)
	}
	for range 3 {
		r, g := rawDial(t, f.addr, "127.0.0.2")
		if want := "421 4.7.0 fanmail.test Error: too many connections from 127.0.0.2"; g != want {
			t.Errorf("session 3 from 127.0.0.2: %q, want %q", g, want)
		}
		r.wantClosed()
	}
	if _, g := rawDial(t, f.addr, "127.0.0.3"); !strings.HasPrefix(g, "220") {
		t.Errorf("another client, 127.0.0.3: %s, want 220", g)
	}
	if n := logs.count("too many sessions from one client, refusing its connections"); n != 1 {
		t.Errorf("%d lines for 3 refusals, want 1", n)
	}
	first.cmd("QUIT")
	if !testutil.Poll(5*time.Second, 20*time.Millisecond, func() bool {
		_, g = rawDial(t, f.addr, "127.0.0.2")
		return strings.HasPrefix(g, "220")
	}) {
		t.Fatalf("127.0.0.2 still refused after one of its sessions ended: %s", g)
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
	}
	for _, tt := range tests {
		if got := clientKey(&net.TCPAddr{IP: net.ParseIP(tt.ip), Port: 25}); got != tt.want {
			t.Errorf("clientKey(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}

func TestDiskFloor(t *testing.T) {
	t.Parallel()
	var free atomic.Int64
	var logs syncBuffer
	f := startWith(t, Config{MaxMessageSize: 5 << 20, Logger: logs.logger(), Load: Load{
		MinFreeSpace: 10 << 20, Interval: time.Millisecond,
		FreeSpace: func() (int64, error) { return free.Load(), nil },
	}})
	tests := []struct {
		name string
		free int64
		mail string
		want string
	}{
		{"below the floor", 5 << 20, "MAIL FROM:<poster@example.org>", "452 4.3.1"},
		{"above the floor", 50 << 20, "MAIL FROM:<poster@example.org>", "250 2.0.0"},
		{"SIZE would cross the floor", 11 << 20, "MAIL FROM:<poster@example.org> SIZE=2000000", "452 4.3.1"},
		{"SIZE fits", 13 << 20, "MAIL FROM:<poster@example.org> SIZE=2000000", "250 2.0.0"},
	}
	for _, tt := range tests {
		free.Store(tt.free)
		time.Sleep(5 * time.Millisecond)
		r, _ := rawDial(t, f.addr, "")
		r.cmd("EHLO client.example.org")
		if got := r.cmd(tt.mail); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	// The disk fills between MAIL and DATA: the body is not taken.
	free.Store(50 << 20)
	time.Sleep(5 * time.Millisecond)
	r, _ := rawDial(t, f.addr, "")
	r.cmd("EHLO client.example.org")
	r.cmd("MAIL FROM:<poster@example.org>")
	r.cmd("RCPT TO:<announce@lists.example.org>")
	free.Store(1 << 20)
	time.Sleep(5 * time.Millisecond)
	r.cmd("DATA")
	if got := r.cmd(post + "."); !strings.HasPrefix(got, "452 4.3.1") {
		t.Errorf("end of DATA with the disk full: %s, want 452 4.3.1", got)
	}
	if s := f.queue.Stats(); s.Messages != 0 {
		t.Errorf("%d messages queued with the disk below its floor", s.Messages)
	}
	if n := logs.count("low disk space: refusing new mail"); n < 1 {
		t.Error("no log line when the disk went below the floor")
	}
}

func TestFreeSpace(t *testing.T) {
	t.Parallel()
	free, err := freeSpace([]string{t.TempDir(), "."})
	if err != nil || free <= 0 {
		t.Errorf("freeSpace = %d, %v; want the free bytes", free, err)
	}
	if _, err := freeSpace([]string{"/nonexistent/spool"}); err == nil {
		t.Error("freeSpace of a missing directory: no error")
	}
	if _, err := freeSpace(nil); err == nil {
		t.Error("freeSpace of no directory: no error")
	}
}

func TestHeloName(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"mail.example.org", "mail.example.org"},
		{"Mail.Example.ORG", "mail.example.org"},
		{"localhost", "localhost"},
		{"[192.0.2.1]", "[192.0.2.1]"},
		{"[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"},
		{"evil\rBcc:victim@example.org", "unknown"},
		{"evil\r", "unknown"},
		{"my_host.example.org", "unknown"},
		{"-bad.example.org", "unknown"},
		{"example..org", "unknown"},
		{"bücher.example", "unknown"},
		{"[192.0.2.300]", "unknown"},
		{"user@example.org", "unknown"},
		{strings.Repeat("a", 64) + ".example", "unknown"},
		{"", "unknown"},
	}
	for _, tt := range tests {
		if got := heloName(tt.in); got != tt.want {
			t.Errorf("heloName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// A bare CR in EHLO never reaches a header: Received says unknown.
func TestHeloNeverRawInReceived(t *testing.T) {
	t.Parallel()
	f := startWith(t, Config{MaxMessageSize: 1 << 20})
	r, _ := rawDial(t, f.addr, "")
	if rep := r.cmd("EHLO evil\rBcc: victim@example.org"); !strings.HasPrefix(rep, "250") {
		t.Fatalf("EHLO: %s", rep)
	}
	r.cmd("MAIL FROM:<poster@example.org>")
	r.cmd("RCPT TO:<announce@lists.example.org>")
	r.cmd("DATA")
	if rep := r.cmd(post + "."); !strings.HasPrefix(rep, "250") {
		t.Fatalf("end of DATA: %s", rep)
	}
	prefixes := f.modes.allPrefixes()
	if len(prefixes) != 1 {
		t.Fatalf("%d parts queued, want 1", len(prefixes))
	}
	p := prefixes[0]
	if !bytes.HasPrefix(p, []byte("Received: from unknown ([127.0.0.1])\r\n")) {
		t.Errorf("Received header:\n%s\nwant it from unknown", p)
	}
	if bytes.Contains(p, []byte("victim")) || bytes.Count(p, []byte("\r")) != bytes.Count(p, []byte("\r\n")) {
		t.Errorf("client text in the headers:\n%q", p)
	}
}
