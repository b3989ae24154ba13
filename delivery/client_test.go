package delivery

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
)

func TestReadResponse(t *testing.T) {
	long := strings.Repeat("x", maxReplyLine-4) // "250 " + this is exactly the limit
	lines := func(n int) string {
		var b strings.Builder
		for i := range n - 1 {
			fmt.Fprintf(&b, "250-line %d\r\n", i)
		}
		b.WriteString("250 last\r\n")
		return b.String()
	}
	tests := []struct {
		name  string
		in    string
		code  int
		msg   string
		error string // substring; "" for success
	}{
		{"one line", "250 2.0.0 ok\r\n", 250, "2.0.0 ok", ""},
		{"bare LF", "250 ok\n", 250, "ok", ""},
		{"code only", "250\r\n", 250, "", ""},
		{"multi-line", "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n", 250, "mx.test\nPIPELINING\nSIZE 100", ""},
		{"sloppy continuation kept as text", "250-a\r\nb\r\n251-c\r\n250 d\r\n", 250, "a\nb\n251-c\nd", ""},
		{"line at the limit", "250 " + long + "\r\n", 250, long, ""},
		{"line over the limit", "250 " + long + "x\r\n", 0, "", "longer than 4096 octets"},
		{"endless line", "220 " + strings.Repeat("y", 1<<20), 0, "", "longer than 4096 octets"},
		{"lines at the limit", lines(maxReplyLines), 250, "", ""},
		{"lines over the limit", lines(maxReplyLines + 1), 0, "", "longer than 100 lines"},
		{"no code", "hello\r\n", 0, "", "malformed reply line"},
		{"bad separator", "250+x\r\n", 0, "", "malformed reply line"},
		{"closed before a reply", "", 0, "", "EOF"},
		{"cut inside a line", "250 no end", 0, "", "unexpected EOF"},
		{"cut inside a reply", "250-more\r\n", 0, "", "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg, err := readResponse(bufio.NewReader(strings.NewReader(tt.in)))
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("err = %v, want %q", err, tt.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || (tt.msg != "" && msg != tt.msg) {
				t.Errorf("got %d %q, want %d %q", code, msg, tt.code, tt.msg)
			}
		})
	}
}

// hostileMX is a raw TCP server that answers every connection with
// script, then closes it. It stops when the client goes away.
func hostileMX(t *testing.T, addr string, script func(c net.Conn, r *bufio.Reader) error) *sync.WaitGroup {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = script(c, bufio.NewReader(c))
			})
		}
	})
	return &wg
}

// endless writes chunk until the client stops reading, then reports how
// much it sent.
func endless(c net.Conn, chunk []byte, sent *int) error {
	for {
		n, err := c.Write(chunk)
		*sent += n
		if err != nil {
			return err
		}
	}
}

// repeatLines writes n copies of line (from one buffer, so the server
// allocates nothing while the client is measured), then last, counting
// the bytes it got out.
func repeatLines(c net.Conn, line string, n int, last string, sent *int) error {
	const per = 4096
	chunk := []byte(strings.Repeat(line, per))
	for n > 0 {
		k, err := c.Write(chunk[:min(n, per)*len(line)])
		*sent += k
		if err != nil {
			return err
		}
		n -= min(n, per)
	}
	k, err := io.WriteString(c, last)
	*sent += k
	return err
}

// TestHostileMXBounded: an MX that sends an endless reply line, or a
// reply of 100,000 lines, costs the client a few kilobytes and a closed
// connection, and defers its envelope, while another domain in the same
// run is delivered. Memory is measured, not time: the test is not
// parallel, so the allocation counters are this test's.
func TestHostileMXBounded(t *testing.T) {
	const hostileIP = "127.0.0.51"
	greetingLine := []byte(strings.Repeat("x", 64<<10))
	tests := []struct {
		name   string
		script func(c net.Conn, r *bufio.Reader, sent *int) error
	}{
		{"endless greeting line", func(c net.Conn, _ *bufio.Reader, sent *int) error {
			if _, err := io.WriteString(c, "220 "); err != nil {
				return err
			}
			return endless(c, greetingLine, sent)
		}},
		{"100000-line greeting", func(c net.Conn, _ *bufio.Reader, sent *int) error {
			return repeatLines(c, "220-hostile.test\r\n", 100_000, "220 hostile.test\r\n", sent)
		}},
		{"100000-line EHLO reply", func(c net.Conn, r *bufio.Reader, sent *int) error {
			if _, err := io.WriteString(c, "220 hostile.test ESMTP\r\n"); err != nil {
				return err
			}
			if _, err := r.ReadString('\n'); err != nil {
				return err
			}
			return repeatLines(c, "250-X-FEATURE\r\n", 100_000, "250 OK\r\n", sent)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.dns.SetMXHosts("good.test", 300, sinkIP(0))
			w.dns.SetMXHosts("hostile.test", 300, hostileIP)
			var conns atomic.Int32
			hungUp := make(chan int, 10) // bytes sent, once the client has gone
			hostileMX(t, fmt.Sprintf("%s:%d", hostileIP, w.port), func(c net.Conn, r *bufio.Reader) error {
				conns.Add(1)
				n := 0
				err := tt.script(c, r, &n)
				hungUp <- n
				return err
			})
			a := w.agent(w.config())

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var good, bad []envelope.Result
			var wg sync.WaitGroup
			wg.Go(func() { good = a.Deliver(ctxT(t), request("good.test", "a", "b")) })
			wg.Go(func() { bad = a.Deliver(ctxT(t), request("hostile.test", "victim")) })
			wg.Wait()
			runtime.ReadMemStats(&after)

			checkBriefs(t, []brief{sent, sent}, good)
			if diff := cmp.Diff([]brief{{envelope.Deferred, 0, "4.5.0"}}, briefs(bad)); diff != "" {
				t.Errorf("hostile MX (-want +got):\n%s\n%+v", diff, bad)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			heap := int64(after.HeapInuse) - int64(before.HeapInuse)
			t.Logf("reply: %v; allocated %d KiB, heap in use %+d KiB", bad[0].Text, alloc>>10, heap>>10)
			if alloc > 4<<20 || heap > 4<<20 {
				t.Errorf("delivering past a hostile MX allocated %d bytes (heap in use %+d), want under 4 MiB", alloc, heap)
			}
			select {
			case n := <-hungUp:
				t.Logf("the hostile MX got out %d bytes before the client hung up", n)
			case <-time.After(5 * time.Second):
				t.Error("the client did not close the connection to the hostile MX")
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("%d connections to the hostile MX, want 1 (closed, not retried)", n)
			}
		})
	}
}

// TestReplyBoundInTransaction: a reply over the bounds mid-transaction
// defers the recipients and the connection is not reused.
func TestReplyBoundInTransaction(t *testing.T) {
	t.Parallel()
	s := newScripted(t, "127.0.0.1", &scripted{ext: pipeExt, reply: func(cmd string) string {
		if strings.HasPrefix(cmd, "RCPT TO:<a@") {
			return "250 " + strings.Repeat("z", maxReplyLine)
		}
		return ""
	}})
	a := scriptedAgent(t, s, nil)
	res := a.Deliver(ctxT(t), request("example.test", "a"))
	if len(res) != 1 || res[0].Status != envelope.Deferred || res[0].Enhanced != "4.5.0" || !strings.Contains(res[0].Text, "longer than 4096") {
		t.Fatalf("got %+v, want deferred 4.5.0", res)
	}
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "b")))
	if conns, _, _, _, _ := s.stats(); conns != 2 {
		t.Errorf("%d connections, want 2: the broken one must not be reused", conns)
	}
}
