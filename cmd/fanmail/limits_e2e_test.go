package main

// End-to-end tests of what bounds a session and what keeps client text
// and bounces where they belong, against the real binary.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
)

// rawSMTP is a testutil.RawSMTP with a large buffer for pipelining.
type rawSMTP struct {
	*testutil.RawSMTP
	w *bufio.Writer
}

// dialRaw connects from the loopback address from ("" for any) and
// returns the greeting.
func dialRaw(t testing.TB, addr, from string) (*rawSMTP, string) {
	t.Helper()
	s, g := testutil.DialRawSMTP(t, addr, from, 2*time.Minute)
	return &rawSMTP{RawSMTP: s, w: bufio.NewWriterSize(s.Conn, 64<<10)}, g
}

// cmd sends one line and returns its reply. A write error is left to
// the read: a server that hung up may have answered already.
func (s *rawSMTP) cmd(t testing.TB, line string) string {
	t.Helper()
	_, _ = io.WriteString(s.Conn, line+"\r\n")
	rep, err := s.Reply()
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return rep
}

// unknownRcpts pipelines n RCPTs for addresses that exist nowhere,
// numbered from first, and counts the replies until n or a hang-up; it
// returns the 550s and the last reply.
func (s *rawSMTP) unknownRcpts(first, n int) (rejected int, last string) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			fmt.Fprintf(s.w, "RCPT TO:<nobody-%d@lists.example.org>\r\n", first+i)
		}
		_ = s.w.Flush() // fails once the server hangs up
	})
	defer wg.Wait()
	for range n {
		rep, err := s.Reply()
		if err != nil {
			s.Conn.Close() // unblocks the writer
			return rejected, last
		}
		last = rep
		if !strings.HasPrefix(rep, "550 5.1.1") {
			s.Conn.Close()
			return rejected, last
		}
		rejected++
	}
	return rejected, last
}

// 200,000 unknown recipients, on one session and over many, leave the
// server's peak memory within 64 MB of where it started: no answer is
// kept without bound, and rejected RCPTs count against the limits. A
// second 200,000 on the same server adds next to nothing, which is what
// tells bounded memory from memory that merely fits the budget once.
func TestUnknownRecipientsMemory(t *testing.T) {
	t.Parallel()
	const total, budget, again = 200000, 64 << 20, 16 << 20
	n := newFakeNet(t, []string{"d00.test"}, nil)
	tests := []struct {
		name   string
		extra  string
		per    int // RCPTs sent per session
		rounds int
	}{
		// Limits raised so that one session really makes every lookup.
		{"one session", "[smtp]\nmax_recipients = 1000000\nmax_errors = 1000000\n", total, 2},
		// The default recipient limit, and an error limit that ends each
		// session after 500 unknown recipients.
		{"across reconnects", "[smtp]\nmax_errors = 500\n", 600, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := n.newConfig(t, tt.extra)
			openList(t, cfg, e2eList)
			p := startFanmail(t, cfg)
			start := p.peakRSS(t)
			peaks := []int64{start}
			for round := range tt.rounds {
				answered, sessions := 0, 0
				for answered < total {
					s, _ := dialRaw(t, p.addr, "")
					s.cmd(t, "EHLO client.example.org")
					s.cmd(t, "MAIL FROM:<poster@example.org>")
					sent := min(tt.per, total-answered)
					got, last := s.unknownRcpts(round*total+answered, sent)
					answered += got
					sessions++
					if got == 0 {
						t.Fatalf("session %d: no RCPT answered; last reply %q", sessions, last)
					}
					if sent < total && sent >= 500 && last != "421 4.7.0 fanmail.test Error: too many errors" {
						t.Fatalf("session %d: last reply %q, want the error limit's 421", sessions, last)
					}
					s.Conn.Close()
				}
				peaks = append(peaks, p.peakRSS(t))
				t.Logf("round %d: %d unknown RCPTs over %d sessions: peak RSS %d MB (%d MB at start)",
					round+1, answered, sessions, peaks[round+1]>>20, start>>20)
			}
			if grew := peaks[1] - start; grew > budget {
				t.Errorf("peak RSS grew by %d MB, want at most %d MB", grew>>20, budget>>20)
			}
			if len(peaks) > 2 {
				if grew := peaks[2] - peaks[1]; grew > again {
					t.Errorf("a second %d unknown RCPTs grew the peak RSS by another %d MB, want at most %d MB",
						total, grew>>20, again>>20)
				}
			}
			p.stop(t)
		})
	}
}

// The (N+1)th session from one address gets 421 4.7.0 while another
// address still connects.
func TestSessionsPerClient(t *testing.T) {
	t.Parallel()
	_, cfg := oneDomain(t, "max_sessions_per_client = 3\n") // under [load]
	p := startFanmail(t, cfg)
	for i := range 3 {
		if _, g := dialRaw(t, p.addr, "127.0.0.2"); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("session %d from 127.0.0.2: %q", i+1, g)
		}
	}
	s, g := dialRaw(t, p.addr, "127.0.0.2")
	if want := "421 4.7.0 fanmail.test Error: too many connections from 127.0.0.2"; g != want {
		t.Errorf("session 4 from 127.0.0.2: %q, want %q", g, want)
	}
	if rep, err := s.Reply(); err == nil {
		t.Errorf("refused connection stayed open: %q", rep)
	}
	if _, g := dialRaw(t, p.addr, "127.0.0.3"); !strings.HasPrefix(g, "220 ") {
		t.Errorf("a session from 127.0.0.3 while 127.0.0.2 is at its cap: %q, want 220", g)
	}
	p.stop(t)
}

// Past max_connection_rate_per_client connections in its window a
// client gets 421 4.7.0 at connect; an exempt address never does, nor
// does the host itself under the default exemption (what fanmail-bench
// relies on).
func TestConnectionRatePerClient(t *testing.T) {
	t.Parallel()
	_, cfg := oneDomain(t, "max_connection_rate_per_client = 3\nconnection_rate_exempt = [\"127.0.0.3\"]\n") // under [load]
	p := startFanmail(t, cfg)
	for i := range 3 {
		s, g := dialRaw(t, p.addr, "127.0.0.2")
		if !strings.HasPrefix(g, "220 ") {
			t.Fatalf("connection %d from 127.0.0.2: %q", i+1, g)
		}
		s.cmd(t, "QUIT")
	}
	s, g := dialRaw(t, p.addr, "127.0.0.2")
	if want := "421 4.7.0 fanmail.test Error: too many connections from 127.0.0.2"; g != want {
		t.Errorf("connection 4 from 127.0.0.2 in one minute: %q, want %q", g, want)
	}
	if rep, err := s.Reply(); err == nil {
		t.Errorf("refused connection stayed open: %q", rep)
	}
	for i := range 10 {
		s, g := dialRaw(t, p.addr, "127.0.0.3")
		if !strings.HasPrefix(g, "220 ") {
			t.Fatalf("connection %d from exempt 127.0.0.3: %q", i+1, g)
		}
		s.cmd(t, "QUIT")
	}
	p.stop(t)

	_, cfg = oneDomain(t, "")
	p = startFanmail(t, cfg)
	for i := range 150 { // past the default 120 a minute
		s, g := dialRaw(t, p.addr, "127.0.0.2")
		if !strings.HasPrefix(g, "220 ") {
			t.Fatalf("connection %d from loopback under the defaults: %q", i+1, g)
		}
		s.cmd(t, "QUIT")
	}
	p.stop(t)
}

// A NOOP loop is cut by the junk-command limit; a slow one, by the
// session's lifetime.
func TestNoopLoopCutOff(t *testing.T) {
	t.Parallel()
	_, cfg := oneDomain(t, "[smtp]\ncommand_timeout = \"1s\"\nsession_timeout = \"2s\"\n")
	p := startFanmail(t, cfg)

	s, _ := dialRaw(t, p.addr, "")
	s.cmd(t, "EHLO client.example.org")
	noops := 0
	var last string
	for ; noops < 1000; noops++ {
		if last = s.cmd(t, "NOOP"); !strings.HasPrefix(last, "250") {
			break
		}
	}
	// EHLO and 99 NOOPs are within the 100 junk commands; NOOPs 100 to
	// 119 are errors, and the 20th error ends the session.
	if noops != 119 || last != "421 4.7.0 fanmail.test Error: too many errors" {
		t.Errorf("fast NOOP loop: %d NOOPs answered 250, then %q; want 119, then the 421", noops, last)
	}
	if rep, err := s.Reply(); err == nil {
		t.Errorf("connection open after the 421: %q", rep)
	}

	s, _ = dialRaw(t, p.addr, "")
	t0 := time.Now()
	s.cmd(t, "EHLO client.example.org")
	for {
		if last = s.cmd(t, "NOOP"); !strings.HasPrefix(last, "250") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if took := time.Since(t0); last != "421 4.4.2 fanmail.test Error: session time limit exceeded" || took < 2*time.Second {
		t.Errorf("slow NOOP loop ended after %v with %q, want the lifetime's 421 after 2s", took, last)
	}
	p.stop(t)
}

// Below the disk floor new mail gets 452 4.3.1 instead of filling the
// disk.
func TestDiskFloor(t *testing.T) {
	t.Parallel()
	// Above any disk's free space.
	_, cfg := oneDomain(t, "[smtp]\nmin_free_space = \"1000000GB\"\n")
	openList(t, cfg, e2eList)
	p := startFanmail(t, cfg)
	s, _ := dialRaw(t, p.addr, "")
	s.cmd(t, "EHLO client.example.org")
	if rep := s.cmd(t, "MAIL FROM:<poster@example.org>"); !strings.HasPrefix(rep, "452 4.3.1 ") {
		t.Errorf("MAIL below the disk floor: %q, want 452 4.3.1", rep)
	}
	if !p.logged("low disk space: refusing new mail", 1, 5*time.Second) {
		t.Error("no log line says why mail is refused")
	}
	p.stop(t)
}

// A bare CR in the EHLO name never reaches a header of the delivered
// copy.
func TestEHLOCarriageReturn(t *testing.T) {
	t.Parallel()
	n, cfg := oneDomain(t, "")
	openList(t, cfg, e2eList)
	fanmailCLI(t, cfg, "", "member", "add", e2eList, "m@d00.test")
	p := startFanmail(t, cfg)
	s, _ := dialRaw(t, p.addr, "")
	if rep := s.cmd(t, "EHLO evil\rBcc: victim@example.org"); !strings.HasPrefix(rep, "250") {
		t.Fatalf("EHLO: %q", rep)
	}
	s.cmd(t, "MAIL FROM:<poster@example.org>")
	s.cmd(t, "RCPT TO:<"+e2eList+">")
	s.cmd(t, "DATA")
	if rep := s.cmd(t, e2ePost+"."); !strings.HasPrefix(rep, "250 ") {
		t.Fatalf("end of DATA: %q", rep)
	}
	n.waitDelivered(t, 1, 30*time.Second, p)
	d := n.sinks["d00.test"].Deliveries()[0]
	header, _, _ := bytes.Cut(d.Data, []byte("\r\n\r\n"))
	if !bytes.Contains(header, []byte("Received: from unknown ([127.0.0.1])\r\n")) {
		t.Errorf("Received does not name the client unknown:\n%s", header)
	}
	if bytes.Contains(header, []byte("victim")) || bytes.Count(header, []byte("\r")) != bytes.Count(header, []byte("\r\n")) {
		t.Errorf("EHLO text reached the header:\n%q", header)
	}
	p.stop(t)
}

// Mail to owner-LIST goes to the owner from the list's bounce address;
// when the owner's MX refuses it, the DSN goes there (read inside
// fanmail, never to the poster) and, naming no member, on to the owner
// from the null sender, so that a failure of that ends it; it returns
// the header alone.
func TestOwnerMailBounce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var forwardedFrom []string
	n := newFakeNet(t, []string{"example.org", "lists.example.org", "poster.test"}, func(d string) fakenet.SinkOptions {
		if d != "example.org" {
			return fakenet.SinkOptions{}
		}
		return fakenet.SinkOptions{RcptHook: func(from, to string) error {
			mu.Lock()
			forwardedFrom = append(forwardedFrom, from)
			mu.Unlock()
			if from == "" {
				return nil // the DSN, passed on
			}
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
		}}
	})
	cfg := n.newConfig(t, "")
	openList(t, cfg, e2eList, "--owner", "alice@example.org")
	p := startFanmail(t, cfg)
	const post = "From: Poster <someone@poster.test>\r\nTo: owner-announce@lists.example.org\r\n" +
		"Subject: for the owner\r\nMessage-ID: <own-1@poster.test>\r\n\r\nbody that must not come back\r\n"
	postTo(t, p.addr, "someone@poster.test", "owner-"+e2eList, post)

	d := n.waitMessages(t, "alice@example.org", 1, p)[0]
	mu.Lock()
	if len(forwardedFrom) != 2 || forwardedFrom[0] != e2eBounces || forwardedFrom[1] != "" {
		t.Errorf("mail to the owner from %q, want <%s> (the forward), then <> (its DSN)", forwardedFrom, e2eBounces)
	}
	mu.Unlock()
	for _, want := range []string{"Content-Type: text/rfc822-headers", "Subject: for the owner",
		"Final-Recipient: rfc822; alice@example.org"} {
		if !bytes.Contains(d.Data, []byte(want)) {
			t.Errorf("DSN lacks %q:\n%s", want, d.Data)
		}
	}
	if bytes.Contains(d.Data, []byte("body that must not come back")) {
		t.Errorf("DSN returns the body:\n%s", d.Data)
	}
	for _, dom := range []string{"poster.test", "lists.example.org"} {
		if got := len(n.sinks[dom].Deliveries()); got != 0 {
			t.Errorf("%d messages went to %s, want none", got, dom)
		}
	}
	p.stop(t)
}

// lists.db and the files beside it, and the control socket, are the
// server user's; a caller of another uid gets a clear refusal even when
// the socket is opened up by mistake.
func TestFileModesAndPeerCheck(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test"}, nil)
	// Under a directory other users can enter, for the second half.
	base := testutil.OpenTempDir(t, "fanmail-modes", 0o755)
	data := filepath.Join(base, "data")
	cfg := n.writeConfig(t, data, "")
	openList(t, cfg, e2eList)
	p := startFanmail(t, cfg)
	for name, want := range map[string]os.FileMode{
		"lists.db": 0o600, "lists.db-wal": 0o600, "lists.db-shm": 0o600, "control.sock": os.ModeSocket | 0o600,
	} {
		fi, err := os.Stat(filepath.Join(data, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := fi.Mode() & (os.ModeSocket | os.ModePerm); got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}

	if os.Geteuid() != 0 {
		t.Log("not root: the peer check against another uid is tested in package control only when root")
		p.stop(t)
		return
	}
	// Open everything up, as a careless administrator might, and call
	// as uid 65534.
	bin := filepath.Join(base, "fanmail")
	testutil.CopyFile(t, fanmailBinary(t), bin, 0o755)
	pubCfg := filepath.Join(base, "fanmail.toml")
	testutil.CopyFile(t, cfg, pubCfg, 0o755)
	for _, path := range []string{data, filepath.Join(data, "control.sock")} {
		if err := os.Chmod(path, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "--config", pubCfg, "queue")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	want := "permission denied: the queue socket answers root and uid 0 (the server's user), not uid 65534"
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("fanmail queue as uid 65534: %v\n%s\nwant a failure saying %q", err, out, want)
	}
	// Root still gets its answer.
	if out := fanmailCLI(t, cfg, "", "queue"); strings.Contains(out, "permission denied") {
		t.Errorf("fanmail queue as root: %s", out)
	}
	p.stop(t)
}
