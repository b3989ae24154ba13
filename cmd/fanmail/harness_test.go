package main

// The end-to-end harness: it builds the real fanmail binary, runs it as a
// child process against a real DNS server and real SMTP sinks on
// loopback (each domain's MX on its own 127.x.y.z address), and talks to
// it over SMTP and through its CLI (harness_client_test.go), as an
// operator would.

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// fanmailBinary builds cmd/fanmail once per test run, with the test hooks.
func fanmailBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fanmail-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "fanmail")
		// The tag adds the test hooks of testhooks.go, inert unless
		// their environment variables are set.
		out, err := exec.Command("go", "build", "-tags", "fanmail_testhooks", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// fakeNet is the outside world of one test: a DNS server and one sink per
// domain, all sinks on the same port so fanmail's delivery.port reaches
// every MX.
type fakeNet struct {
	dns   *fakenet.DNS
	port  int
	sinks map[string]*fakenet.Sink // by domain
}

// newFakeNet starts the DNS server and a sink for each domain; opts (may
// be nil) customises a domain's sink.
func newFakeNet(t testing.TB, domains []string, opts func(domain string) fakenet.SinkOptions) *fakeNet {
	t.Helper()
	d, err := fakenet.NewDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	// A random 127.A.B.0 block keeps parallel test runs off each other's
	// addresses; a clash just means trying another block.
	for try := 0; ; try++ {
		n := &fakeNet{dns: d, sinks: map[string]*fakenet.Sink{}}
		a, b := 1+rand.IntN(250), rand.IntN(200)
		ok := true
		for i, domain := range domains {
			var o fakenet.SinkOptions
			if opts != nil {
				o = opts(domain)
			}
			o.Addr = fmt.Sprintf("127.%d.%d.%d:%d", a, b+i/250, 1+i%250, n.port)
			s, err := fakenet.NewSink(o)
			if err != nil {
				if try == 10 {
					t.Fatal(err)
				}
				ok = false
				break
			}
			n.port = s.Port()
			n.sinks[domain] = s
			mx := "mx." + domain
			d.SetMX(domain, 300, fakenet.MX{Pref: 10, Host: mx})
			d.SetA(mx, 300, s.Host())
		}
		if ok {
			for _, s := range n.sinks {
				t.Cleanup(func() { s.Close() })
			}
			return n
		}
		for _, s := range n.sinks {
			s.Close()
		}
	}
}

// newDeferringNet is newFakeNet whose sinks answer every RCPT 451 with
// enh and msg while the switch it returns is on; it starts on.
func newDeferringNet(t testing.TB, domains []string, enh smtp.EnhancedCode, msg string) (*fakeNet, *atomic.Bool) {
	t.Helper()
	var on atomic.Bool
	on.Store(true)
	n := newFakeNet(t, domains, func(string) fakenet.SinkOptions {
		return fakenet.SinkOptions{RcptHook: func(_, _ string) error {
			if on.Load() {
				return &smtp.SMTPError{Code: 451, EnhancedCode: enh, Message: msg}
			}
			return nil
		}}
	})
	return n, &on
}

// writeConfig writes a config for a server using n, plus extra TOML lines.
func (n *fakeNet) writeConfig(t testing.TB, dataDir, extra string) string {
	t.Helper()
	// Envelopes (the queue's r=) decide the transactions in these tests.
	return n.writeConfigDelivery(t, dataDir, "recipients_per_transaction = 1000", extra)
}

// newConfig is writeConfig for a server with a data directory of its
// own, not created yet.
func (n *fakeNet) newConfig(t testing.TB, extra string) string {
	t.Helper()
	return n.writeConfig(t, filepath.Join(t.TempDir(), "data"), extra)
}

// writeConfigDelivery is writeConfig with delivery's lines given.
func (n *fakeNet) writeConfigDelivery(t testing.TB, dataDir, delivery, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`listen = "127.0.0.1:0"
hostname = "fanmail.test"
data_dir = %q

[delivery]
resolvers = [%q]
port = %d
connect_timeout = "2s"
command_timeout = "10s"
data_timeout = "20s"
%s

# The machine running the tests may be busy; load control has its own tests.
[load]
queue_la = 0
refuse_la = 0
%s`, dataDir, n.dns.Addr(), n.port, delivery, extra)
	path := filepath.Join(t.TempDir(), "fanmail.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// recipientCounts adds up deliveries per recipient over every sink.
func (n *fakeNet) recipientCounts() map[string]int {
	got := map[string]int{}
	for _, s := range n.sinks {
		for _, d := range s.Deliveries() {
			for _, r := range d.Recipients {
				got[r]++
			}
		}
	}
	return got
}

// wantEachOnce checks that every one of rcpts got exactly one delivery,
// and returns the counts for further checks.
func (n *fakeNet) wantEachOnce(t testing.TB, rcpts []string) map[string]int {
	t.Helper()
	got := n.recipientCounts()
	for _, r := range rcpts {
		if got[r] != 1 {
			t.Errorf("%s received the post %d times, want exactly 1", r, got[r])
		}
	}
	return got
}

func (n *fakeNet) delivered() int {
	total := 0
	for _, s := range n.sinks {
		total += s.RecipientsDelivered()
	}
	return total
}

// waitDelivered waits until the sinks have counted want recipients.
func (n *fakeNet) waitDelivered(t testing.TB, want int, timeout time.Duration, p *proc) {
	t.Helper()
	n.waitCount(t, "recipients", n.delivered, want, timeout, p)
}

// waitDistinct waits until the sinks have counted want distinct
// (message, recipient) pairs: after a kill, duplicates would make
// waitDelivered's total reach want while a recipient is still queued.
func (n *fakeNet) waitDistinct(t testing.TB, want int, timeout time.Duration, p *proc) {
	t.Helper()
	n.waitCount(t, "distinct recipients", func() int {
		total := 0
		for _, s := range n.sinks {
			st := s.Stats()
			total += st.RecipientsDelivered - st.Duplicates
		}
		return total
	}, want, timeout, p)
}

func (n *fakeNet) waitCount(t testing.TB, what string, count func() int, want int, timeout time.Duration, p *proc) {
	t.Helper()
	if !testutil.Poll(timeout, 20*time.Millisecond, func() bool { return count() >= want }) {
		p.dumpLog(t)
		t.Fatalf("sinks counted %d of %d %s after %v", count(), want, what, timeout)
	}
}

// proc is one running fanmail server.
type proc struct {
	cmd  *exec.Cmd
	addr string // SMTP listen address as bound
	log  *testutil.SyncBuffer
	done chan struct{}
	err  error // exit status, once done is closed
}

// listenRE finds the bound address in the start-up line, logged as text
// or as JSON (--log-format json).
var listenRE = regexp.MustCompile(`msg="fanmail started" listen=(\S+)|"msg":"fanmail started","listen":"([^"]+)"`)

// startFanmail runs `fanmail --config cfg serve`, with env added to its
// environment, and waits until it logs the address it listens on.
func startFanmail(t testing.TB, cfg string, env ...string) *proc {
	t.Helper()
	return startFanmailArgs(t, env, "--config", cfg, "serve")
}

// startFanmailArgs runs fanmail with args and extra environment entries.
func startFanmailArgs(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(fanmailBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	p := &proc{cmd: cmd, log: &testutil.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = pw
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	logged := make(chan struct{}) // every line the process wrote is in p.log
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.log.Write([]byte(line + "\n"))
			if m := listenRE.FindStringSubmatch(line); m != nil {
				started <- m[1] + m[2]
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		<-logged // so that a test reading the log after exit sees all of it
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.dumpLog(t)
		}
	})
	select {
	case p.addr = <-started:
		return p
	case <-p.done:
		t.Fatalf("fanmail exited before listening: %v\n%s", p.err, p.log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("fanmail did not start listening within 30s\n%s", p.log.String())
	}
	return nil
}

// logged waits up to timeout until the server has logged s count times
// or more, and reports whether it has.
func (p *proc) logged(s string, count int, timeout time.Duration) bool {
	return testutil.Poll(timeout, 20*time.Millisecond, func() bool { return strings.Count(p.log.String(), s) >= count })
}

// waitLog waits up to 10s for the server to log s.
func waitLog(p *proc, s string) bool { return p.logged(s, 1, 10*time.Second) }

// mustLog waits until the server has logged what, or fails the test.
func mustLog(t testing.TB, p *proc, what string, timeout time.Duration) {
	t.Helper()
	if !p.logged(what, 1, timeout) {
		p.dumpLog(t)
		t.Fatalf("the server did not log %q within %v", what, timeout)
	}
}

// httpBase returns the http:// URL of an endpoint the server logged at
// start-up: re finds the line, its first group the address; what names
// the endpoint if it is missing.
func (p *proc) httpBase(t testing.TB, re *regexp.Regexp, what string) string {
	t.Helper()
	m := re.FindStringSubmatch(p.log.String())
	if m == nil {
		t.Fatalf("no %s in the start-up log:\n%s", what, p.log)
	}
	return "http://" + m[1]
}

func (p *proc) dumpLog(t testing.TB) {
	t.Helper()
	lines := strings.Split(p.log.String(), "\n")
	if len(lines) > 60 {
		lines = append([]string{"..."}, lines[len(lines)-60:]...)
	}
	t.Logf("fanmail log:\n%s", strings.Join(lines, "\n"))
}

// peakRSS is the server's peak resident set so far (VmHWM in
// /proc/PID/status), in bytes.
func (p *proc) peakRSS(t testing.TB) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the server's status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				t.Fatalf("VmHWM line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
	return 0
}

// kill ends the server the hard way, as a crash or power cut would.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// stop sends SIGTERM and requires a clean exit 0.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(40 * time.Second):
		t.Fatal("fanmail did not exit within 40s of SIGTERM")
	}
	if p.err != nil {
		t.Fatalf("fanmail exited with %v after SIGTERM, want exit status 0", p.err)
	}
}
