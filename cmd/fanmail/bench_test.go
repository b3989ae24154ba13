package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/fakenet"
)

// BenchmarkFanout10k times one post to 10,000 members over 100 domains,
// from the 250 until the sinks have counted every recipient, against the
// real binary with a durable queue.
func BenchmarkFanout10k(b *testing.B) {
	domains := testDomains(100)
	counts := each(len(domains), 100)
	n := newFakeNet(b, domains, func(string) fakenet.SinkOptions {
		return fakenet.SinkOptions{DiscardBodies: true}
	})
	cfg := n.newConfig(b, "")
	members := makeList(b, cfg, e2eList, domains, counts)
	p := benchFanout(b, n, cfg, len(members), 5*time.Minute)
	p.stop(b)
}

// BenchmarkAcceptSmallPosts measures how fast the server answers 250 to
// one-recipient posts, each durable (fsynced) before its 250, from one
// client posting in a row and from 16 clients at once. In background mode
// delivery runs alongside, as in production; queue mode measures
// acceptance alone.
func BenchmarkAcceptSmallPosts(b *testing.B) {
	for _, bc := range []struct {
		clients int
		mode    string
	}{{1, "background"}, {16, "background"}, {16, "queue"}, {64, "queue"}} {
		clients := bc.clients
		b.Run(fmt.Sprintf("clients=%d/mode=%s", clients, bc.mode), func(b *testing.B) {
			domains := testDomains(1)
			n := newFakeNet(b, domains, func(string) fakenet.SinkOptions {
				return fakenet.SinkOptions{DiscardBodies: true}
			})
			// Every client is 127.0.0.1: the per-client cap (under
			// [load], which the harness's config ends with) must let all in.
			cfg := n.newConfig(b, fmt.Sprintf("max_sessions_per_client = %d\n[queue]\ndelivery_mode = %q\ninterval = \"1h\"\n", clients, bc.mode))
			p := serveList(b, cfg, "solo@d00.test")
			per := (b.N + clients - 1) / clients
			b.ResetTimer()
			var wg sync.WaitGroup
			for c := 0; c < clients; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := postMany(p.addr, per); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(per*clients)/b.Elapsed().Seconds(), "msgs/s")
			p.stop(b)
			// The server's CPU per post (start-up included) varies less
			// on a busy machine than the rate does.
			if st := p.cmd.ProcessState; st != nil {
				b.ReportMetric(float64((st.UserTime()+st.SystemTime()).Microseconds())/float64(per*clients), "server-us/msg")
			}
		})
	}
}

// postMany sends count posts on one SMTP connection, one transaction each.
func postMany(addr string, count int) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("poster.example.org"); err != nil {
		return err
	}
	for i := 0; i < count; i++ {
		if err := c.Mail("poster@example.org", nil); err != nil {
			return err
		}
		if err := c.Rcpt(e2eList, nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, strings.Replace(e2ePost, "e2e-1@", fmt.Sprintf("bench-%d@", i), 1)); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("post %d: %w", i, err)
		}
	}
	return c.Quit()
}

// BenchmarkFanout100kGroups times one post to 100,000 members over 1,000
// domains routed to four queue groups (the default group and three
// more, each in its own directory), from the 250 until the sinks have
// counted every recipient, and reports the server's peak memory.
func BenchmarkFanout100kGroups(b *testing.B) {
	domains := testDomains(1000)
	counts := each(len(domains), 100)
	n := newFakeNet(b, domains, func(string) fakenet.SinkOptions {
		return fakenet.SinkOptions{DiscardBodies: true}
	})
	var groups strings.Builder
	for g := 1; g <= 3; g++ {
		var pats []string
		for i := g; i < len(domains); i += 4 {
			pats = append(pats, `"`+domains[i]+`"`)
		}
		fmt.Fprintf(&groups, "[[queue.group]]\nname = \"g%d\"\npath = \"queue-g%d\"\n", g, g)
		fmt.Fprintf(&groups, "[[queue.rule]]\ndomains = [%s]\ngroup = \"g%d\"\n", strings.Join(pats, ", "), g)
	}
	cfg := n.newConfig(b, "[queue]\nrunners = 32\n"+groups.String())
	members := makeList(b, cfg, e2eList, domains, counts)
	p := benchFanout(b, n, cfg, len(members), 10*time.Minute)
	b.ReportMetric(float64(peakRSS(b, p.cmd.Process.Pid))/(1<<20), "peak-MiB")
	p.stop(b)
}

// peakRSS reads a process's peak resident set size (VmHWM) in bytes.
func peakRSS(t testing.TB, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}

// benchFanout starts the server, then b.N times posts to the list and
// waits for the sinks to count all of its members, reporting recipients
// per second. It returns the server, still running.
func benchFanout(b *testing.B, n *fakeNet, cfg string, members int, timeout time.Duration) *proc {
	p := startFanmail(b, cfg)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		postTo(b, p.addr, "poster@example.org", e2eList, e2ePost)
		n.waitDelivered(b, (i+1)*members, timeout, p)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*members)/b.Elapsed().Seconds(), "rcpts/s")
	return p
}
