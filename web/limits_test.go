package web

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestRateLimitPerClient(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.RateLimit = 0.001 // no refill within the test
		c.RateBurst = 3
	})
	link := f.link(t, announce, "alice@example.com")
	get := func(client string) reply { return do(t, http.MethodGet, link, "", "", "X-Forwarded-For", client) }
	for i := range 3 {
		if r := get("192.0.2.1"); r.code != http.StatusOK {
			t.Fatalf("request %d of the burst: %d %q", i+1, r.code, r.body)
		}
	}
	r := get("192.0.2.1")
	if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Errorf("past the burst: %d %q, Retry-After %q; want 429 with Retry-After", r.code, r.body, r.header.Get("Retry-After"))
	}
	// Bad requests count as well: the limit comes before anything else.
	if r := do(t, http.MethodPost, f.base+"/u/forged", "", "", "X-Forwarded-For", "192.0.2.1"); r.code != http.StatusTooManyRequests {
		t.Errorf("a limited client's bad request: %d, want 429", r.code)
	}
	// Other clients behind the same proxy keep their own buckets; an
	// IPv6 client's bucket is its /64.
	if r := get("192.0.2.2"); r.code != http.StatusOK {
		t.Errorf("another client: %d %q", r.code, r.body)
	}
	for i := range 3 {
		get("2001:db8:1:2::" + string(rune('a'+i)))
	}
	if r := get("2001:db8:1:2::ffff"); r.code != http.StatusTooManyRequests {
		t.Errorf("a fourth address of one IPv6 /64: %d, want 429", r.code)
	}
}

func TestClientAddress(t *testing.T) {
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	proxies := append(loop, netip.MustParsePrefix("10.0.0.0/8"))
	tests := []struct {
		name    string
		peer    string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"direct, no header", "192.0.2.9:4000", nil, loop, "192.0.2.9"},
		{"direct client's header is ignored", "192.0.2.9:4000", []string{"198.51.100.1"}, loop, "192.0.2.9"},
		{"local proxy", "127.0.0.1:4000", []string{"198.51.100.1"}, loop, "198.51.100.1"},
		{"spoofed entries left of the proxy's", "127.0.0.1:4000", []string{"203.0.113.66, 198.51.100.1"}, loop, "198.51.100.1"},
		{"chain of trusted proxies", "127.0.0.1:4000", []string{"198.51.100.1, 10.1.1.1", "10.2.2.2"}, proxies, "198.51.100.1"},
		{"all trusted", "127.0.0.1:4000", []string{"10.1.1.1"}, proxies, "10.1.1.1"},
		{"garbage stops at the proxy", "127.0.0.1:4000", []string{"198.51.100.1, unknown"}, loop, "127.0.0.1"},
		{"hop with port", "127.0.0.1:4000", []string{"198.51.100.1:5555"}, loop, "198.51.100.1"},
		{"IPv6 hop with port", "[::1]:4000", []string{"[2001:db8::7]:5555"}, loop, "2001:db8::7"},
		{"IPv4-mapped peer", "[::ffff:127.0.0.1]:4000", []string{"198.51.100.1"}, loop, "198.51.100.1"},
		{"no proxy trusted", "127.0.0.1:4000", []string{"198.51.100.1"}, nil, "127.0.0.1"},
		{"proxy without header", "127.0.0.1:4000", nil, loop, "127.0.0.1"},
	}
	for _, tt := range tests {
		s := &Server{cfg: Config{TrustedProxies: tt.trusted}}
		r := httptest.NewRequest(http.MethodGet, "/u/x", nil)
		r.RemoteAddr = tt.peer
		for _, h := range tt.xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		if got := s.client(r).String(); got != tt.want {
			t.Errorf("%s: client %s, want %s", tt.name, got, tt.want)
		}
	}
}

// The limiter's table never outgrows max, whatever the number of
// clients; a client whose bucket is full again is forgotten first.
func TestLimiterTableBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newLimiter(0.01, 2, 4, func() time.Time { return now })
	for i := range 1000 {
		l.allow(netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)}))
		if n := len(l.clients); n > 4 {
			t.Fatalf("after %d clients the table holds %d, max 4", i+1, n)
		}
	}
	// A client that spent its burst is still limited while others come
	// and go, as long as the sweep finds idle ones to forget.
	busy := netip.MustParseAddr("198.51.100.1")
	now = now.Add(time.Hour)
	l.allow(busy)
	l.allow(busy)
	for i := range 3 {
		now = now.Add(2 * time.Second) // past the once-a-second sweep
		l.allow(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
	}
	if len(l.clients) > 4 {
		t.Fatalf("table holds %d, max 4", len(l.clients))
	}
	if l.allow(busy) {
		t.Error("the busy client was forgotten while idle ones were kept: its spent burst came back")
	}
}

// A request line and header over MaxHeaderBytes is refused; the server
// answers 431 and the store is not touched.
func TestHeaderTooLarge(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxHeaderBytes = 1024 })
	link := f.link(t, announce, "alice@example.com")
	c, err := net.Dial("tcp", f.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// net/http reads at most MaxHeaderBytes plus 4 KB of header before it
	// answers 431. The request is exactly that long and unfinished, so
	// the server reads all of it: a close with unread input would be a
	// reset, which can discard the 431 before the test reads it.
	req := "POST " + strings.TrimPrefix(link, f.base) + " HTTP/1.1\r\nHost: a\r\nX-Padding: "
	req += strings.Repeat("p", 1024+4096-len(req))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(status, " 431 ") {
		t.Errorf("5 KB header with a 1 KB limit: %q, %v; want 431", status, err)
	}
	f.wantMembers(t, everyone())
}

// A client that never finishes its header is cut off at
// ReadHeaderTimeout, one that sends nothing as well, and one that sends
// a header but not the body it announced at ReadTimeout, with the
// member still on the list.
func TestSlowClientCutOff(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.ReadHeaderTimeout = 200 * time.Millisecond
		c.ReadTimeout = 300 * time.Millisecond
	})
	link := strings.TrimPrefix(f.link(t, announce, "alice@example.com"), f.base)
	for _, partial := range []string{
		"",
		"GET /u/x HTTP/1.1\r\nHost: a\r\nX-Slow: ",
		"POST " + link + " HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 26\r\n\r\nList-Unsub",
	} {
		c, err := net.Dial("tcp", f.srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(partial))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		_, err = io.ReadAll(c)
		if e, ok := err.(net.Error); ok && e.Timeout() {
			t.Errorf("partial request %q: still open after 10s", partial)
		}
		t.Logf("partial request %q: closed after %v", partial, time.Since(start).Round(time.Millisecond))
		c.Close()
	}
	f.wantMembers(t, everyone())
}

// MaxConnections caps open connections: with the cap held by idle
// connections, a further request waits until one closes.
func TestConnectionCap(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxConnections = 2 })
	link := f.link(t, announce, "alice@example.com")
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", f.srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// Each held connection is accepted once it has spoken.
	for _, c := range held {
		c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			t.Fatalf("held connection: %v", err)
		}
	}
	c := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := c.Get(link); err == nil {
		resp.Body.Close()
		t.Fatalf("a third connection was served (%s) with 2 held and a cap of 2", resp.Status)
	}
	held[0].Close()
	if r := do(t, http.MethodGet, link, "", ""); r.code != http.StatusOK {
		t.Errorf("after one closed: %d %q", r.code, r.body)
	}
	held[1].Close()
}
