package delivery

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"fanmail/envelope"
)

// slowLink is a TCP proxy that holds every chunk from the server for rtt
// before passing it on, so each reply the client waits for costs one
// round trip, as on a real link.
func slowLink(b *testing.B, upstream string, rtt time.Duration) string {
	b.Helper()
	ln := acceptLoop(b, "127.0.0.1:0", func(c net.Conn) {
		s, err := net.Dial("tcp", upstream)
		if err != nil {
			c.Close()
			return
		}
		go func() { _, _ = io.Copy(s, c); s.Close() }()
		go delayCopy(c, s, rtt)
	})
	return ln.Addr().String()
}

func delayCopy(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	ch := make(chan chunk, 1024)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{time.Now().Add(d), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	dst.Close()
}

// BenchmarkRoundTrips delivers 100-recipient envelopes over a link with a
// 5ms round trip, with and without PIPELINING and the connection cache.
//
//	go test -run '^$' -bench RoundTrips ./delivery/
func BenchmarkRoundTrips(b *testing.B) {
	const rtt = 5 * time.Millisecond
	for _, bc := range []struct {
		name  string
		ext   []string
		cache int
	}{
		{"lockstep/new-conn", []string{"8BITMIME", "SIZE"}, -1},
		{"lockstep/cached", []string{"8BITMIME", "SIZE"}, 0},
		{"pipelined/new-conn", pipeExt, -1},
		{"pipelined/cached", pipeExt, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := newScripted(b, "127.0.0.1", &scripted{ext: bc.ext})
			addr := slowLink(b, s.addr(), rtt)
			a, err := New(Config{
				Resolvers:     []string{"127.0.0.1:1"},
				Routes:        map[string]string{"example.test": addr},
				HELO:          "fanmail.test",
				ConnCacheSize: bc.cache,
				RcptsPerTxn:   100,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			var rcpts []string
			for i := range 100 {
				rcpts = append(rcpts, fmt.Sprint("r", i))
			}
			env := request("example.test", rcpts...)
			b.ResetTimer()
			for b.Loop() {
				for _, r := range a.Deliver(b.Context(), env) {
					if r.Status != envelope.Delivered {
						b.Fatalf("%+v", r)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/float64(rtt.Milliseconds()), "RTTs/envelope")
		})
	}
}
