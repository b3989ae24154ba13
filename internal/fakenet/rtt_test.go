package fakenet

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// rawClient speaks SMTP by hand so the test controls exactly when each
// command is written: go-smtp's client never pipelines.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// dialEHLO is dialRaw past the greeting and EHLO, whatever their replies.
// dialGreeted dials addr, reads the 220 greeting and returns the client
// with how long the greeting took from the dial.
func dialGreeted(t *testing.T, addr string) (*rawClient, time.Duration) {
	t.Helper()
	start := time.Now()
	c := dialRaw(t, addr)
	if code := c.reply(); code != "220" {
		t.Fatalf("greeting %s", code)
	}
	return c, time.Since(start)
}

func dialEHLO(t *testing.T, addr string) *rawClient {
	t.Helper()
	c := dialRaw(t, addr)
	c.reply()
	c.send("EHLO client.test")
	c.reply()
	return c
}

func (c *rawClient) send(lines ...string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(strings.Join(lines, "\r\n") + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
}

// reply reads one (possibly multi-line) reply and returns its code.
func (c *rawClient) reply() string {
	c.t.Helper()
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read reply: %v", err)
		}
		if len(line) < 4 || line[3] != '-' {
			return line[:3]
		}
	}
}

func TestSinkRTT(t *testing.T) {
	// The lower bounds are exact (the sink never answers early); the
	// upper ones only tell one round trip from two and must survive a
	// busy machine's scheduling delays, so the RTT is long and "one
	// round trip" means under two.
	const rtt = 150 * time.Millisecond
	s := newSink(t, SinkOptions{RTT: rtt})
	txn := []string{"MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "RCPT TO:<c@y.test>", "RCPT TO:<d@y.test>", "DATA"}
	want := []string{"250", "250", "250", "250", "354"}

	t.Run("greeting and EHLO", func(t *testing.T) {
		c, d := dialGreeted(t, s.Addr())
		if d < rtt {
			t.Errorf("greeting after %v, want at least one RTT (%v)", d, rtt)
		}
		start := time.Now()
		c.send("EHLO client.test")
		if code := c.reply(); code != "250" {
			t.Fatalf("EHLO %s", code)
		}
		if d := time.Since(start); d < rtt || d >= 2*rtt {
			t.Errorf("EHLO round trip %v, want one RTT (%v)", d, rtt)
		}
	})

	t.Run("lock-step pays one RTT per command", func(t *testing.T) {
		c := dialEHLO(t, s.Addr())
		start := time.Now()
		for i, cmd := range txn {
			c.send(cmd)
			if code := c.reply(); code != want[i] {
				t.Fatalf("%s: %s, want %s", cmd, code, want[i])
			}
		}
		if d := time.Since(start); d < time.Duration(len(txn))*rtt {
			t.Errorf("%d lock-step commands took %v, want at least %v", len(txn), d, time.Duration(len(txn))*rtt)
		}
	})

	t.Run("pipelined batch pays one RTT", func(t *testing.T) {
		c := dialEHLO(t, s.Addr())
		start := time.Now()
		c.send(txn...)
		for i := range txn {
			if code := c.reply(); code != want[i] {
				t.Fatalf("%s: %s, want %s", txn[i], code, want[i])
			}
		}
		if d := time.Since(start); d < rtt || d >= 2*rtt {
			t.Errorf("pipelined batch of %d took %v, want one RTT (%v)", len(txn), d, rtt)
		}
		// The body and its final dot are one more round trip.
		start = time.Now()
		c.send("Message-ID: <rtt@test>", "", "body", ".")
		if code := c.reply(); code != "250" {
			t.Fatalf("end of data: %s", code)
		}
		if d := time.Since(start); d < rtt || d >= 2*rtt {
			t.Errorf("body took %v, want one RTT", d)
		}
	})
	if st := s.Stats(); st.RecipientsDelivered != 3 {
		t.Errorf("recipients delivered = %d, want 3", st.RecipientsDelivered)
	}
}

func TestSinkDropAndOnRecord(t *testing.T) {
	var (
		mu       sync.Mutex
		recorded []string
	)
	s := newSink(t, SinkOptions{
		Drop: func(d Delivery) bool { return strings.Contains(string(d.Data), "drop me") },
		OnRecord: func(d Delivery, at time.Time) {
			if at.IsZero() {
				t.Error("OnRecord without a time")
			}
			mu.Lock()
			recorded = append(recorded, d.Key)
			mu.Unlock()
		},
	})
	c := dial(t, s.Addr())
	if _, err := send(t, c, "a@x.test", []string{"b@y.test"}, "Subject: drop me\r\n\r\nx\r\n"); err == nil {
		t.Error("dropped transaction got a reply")
	} else if _, ok := err.(*smtp.SMTPError); ok {
		t.Errorf("dropped transaction got SMTP reply %v, want a lost connection", err)
	}
	c = dial(t, s.Addr())
	if _, err := send(t, c, "a@x.test", []string{"b@y.test"}, testMsg); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	mu.Lock()
	defer mu.Unlock()
	if st.Dropped != 1 || st.Transactions != 1 || len(recorded) != 1 || recorded[0] != "<1@test>" {
		t.Errorf("stats %+v, recorded %v; want 1 dropped, 1 transaction recorded", st, recorded)
	}
}
