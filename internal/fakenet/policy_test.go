package fakenet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// replyOf returns "CODE X.Y.Z text" of an SMTP error, or "" for nil.
func replyOf(err error) string {
	if err == nil {
		return ""
	}
	se, ok := errors.AsType[*smtp.SMTPError](err)
	if !ok {
		return "not an SMTP reply: " + err.Error()
	}
	ec := se.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s", se.Code, ec[0], ec[1], ec[2], se.Message)
}

func TestSinkGreylist(t *testing.T) {
	const window = 300 * time.Millisecond
	s := newSink(t, SinkOptions{Greylist: window, RcptHook: func(_, to string) error {
		if strings.HasPrefix(to, "gone") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	c := dial(t, s.Addr())
	attempt := func() []int {
		t.Helper()
		rcptErrs, dataErr := send(t, c, "list@x.test", []string{"a@y.test", "gone@y.test"}, testMsg)
		if dataErr != nil {
			t.Fatalf("data: %v", dataErr)
		}
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
		if se := replyOf(rcptErrs[0]); se != "" && !strings.Contains(strings.ToLower(se), "greylist") {
			t.Errorf("greylisting reply %q does not say greylisted", se)
		}
		return []int{code(rcptErrs[0]), code(rcptErrs[1])}
	}
	first := time.Now()
	// Unknown users are refused before greylisting, as Postfix does.
	if got := attempt(); got[0] != 451 || got[1] != 550 {
		t.Fatalf("first attempt: %v, want [451 550]", got)
	}
	if got := attempt(); got[0] != 451 && time.Since(first) < window {
		t.Fatalf("retry inside the window: %v, want 451", got)
	}
	time.Sleep(window - time.Since(first) + 20*time.Millisecond)
	if got := attempt(); got[0] != 250 {
		t.Fatalf("retry after the window: %v, want 250", got)
	}
	// Another sender is another pair: greylisted afresh.
	if err := c.Mail("other@x.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@y.test", nil); code(err) != 451 {
		t.Errorf("new sender: %v, want 451", err)
	}
	if st := s.Stats(); st.Greylisted != 3 || st.Transactions != 1 {
		t.Errorf("stats: %d greylisted, %d transactions; want 3, 1", st.Greylisted, st.Transactions)
	}
	if got := replyOf(replyGreylisted); !strings.HasPrefix(got, "451 4.7.1 ") {
		t.Errorf("greylisting reply %q, want 451 4.7.1", got)
	}
}

func TestSinkMaxMsgsPerConn(t *testing.T) {
	s := newSink(t, SinkOptions{MaxMsgsPerConn: 2})
	t.Run("lock-step", func(t *testing.T) {
		c := dial(t, s.Addr())
		for i := range 2 {
			if _, err := send(t, c, "a@x.test", []string{"b@y.test"}, testMsg); err != nil {
				t.Fatalf("message %d: %v", i+1, err)
			}
			if err := c.Reset(); err != nil {
				t.Fatal(err)
			}
		}
		err := c.Mail("a@x.test", nil)
		if got := replyOf(err); got != "421 4.7.0 Too many messages on this connection, try again later" {
			t.Fatalf("third MAIL: %q, want 421 4.7.0", got)
		}
		if err := c.Noop(); err == nil {
			t.Error("connection still open after 421")
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		// What follows the 421 in a batch gets no reply: the server has
		// closed, as a real one does.
		c := dialRaw(t, s.Addr())
		c.reply()
		c.send("EHLO client.test")
		c.reply()
		for range 2 {
			c.send("MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA")
			c.reply()
			c.reply()
			c.reply()
			c.send("Message-ID: <p@test>", "", "x", ".")
			if got := c.reply(); got != "250" {
				t.Fatalf("message: %s", got)
			}
		}
		c.send("RSET", "MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA")
		if got := c.reply(); got != "250" {
			t.Fatalf("RSET: %s", got)
		}
		if got := c.reply(); got != "421" {
			t.Fatalf("third MAIL: %s, want 421", got)
		}
		if line, err := c.r.ReadString('\n'); err != io.EOF {
			t.Errorf("after the 421: %q, %v; want the connection closed", line, err)
		}
	})
	if st := s.Stats(); st.Throttled != 2 || st.Transactions != 4 {
		t.Errorf("stats: %d throttled, %d transactions; want 2, 4", st.Throttled, st.Transactions)
	}
}

func TestSinkMaxConnsPerIP(t *testing.T) {
	s := newSink(t, SinkOptions{MaxConnsPerIP: 2})
	var open []*smtp.Client
	for range 2 {
		c := dial(t, s.Addr())
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	third := dial(t, s.Addr())
	if got := replyOf(third.Hello("client.test")); got != "421 4.7.0 Too many concurrent connections from your IP address, try again later" {
		t.Errorf("third connection: %q, want 421 4.7.0 at the greeting", got)
	}
	open[0].Quit()
	// The slot frees once the first session is gone.
	waitSlot(t, s.Addr(), "client.test")
	st := s.Stats()
	if st.Rejected < 1 || st.MaxConcurrentConns != 2 || st.MaxOpenConns < 3 {
		t.Errorf("stats %+v: want >= 1 refused, 2 sessions at most, >= 3 connections open at once", st)
	}
}

func TestSinkMaxRcpts(t *testing.T) {
	s := newSink(t, SinkOptions{MaxRcpts: 2})
	c := dial(t, s.Addr())
	rcptErrs, err := send(t, c, "a@x.test", []string{"b@y.test", "c@y.test", "d@y.test"}, testMsg)
	if err != nil {
		t.Fatal(err)
	}
	if got := replyOf(rcptErrs[2]); got != "452 4.5.3 Too many recipients" || rcptErrs[0] != nil || rcptErrs[1] != nil {
		t.Errorf("RCPT replies %v, want 250 250 452 4.5.3", rcptErrs)
	}
	if st := s.Stats(); st.TooManyRcpts != 1 || st.RecipientsDelivered != 2 {
		t.Errorf("stats %+v: want 1 too many, 2 delivered", st)
	}
}

// The delays below are long enough that a busy machine's scheduling
// stall is not mistaken for a held reply.

func TestSinkTarpitGreeting(t *testing.T) {
	const delay = 500 * time.Millisecond
	s := newSink(t, SinkOptions{GreetDelay: delay})
	c, d := dialGreeted(t, s.Addr())
	if d < delay {
		t.Errorf("greeting after %v, want at least %v", d, delay)
	}
	start := time.Now()
	c.send("EHLO client.test")
	c.reply()
	if d := time.Since(start); d >= delay {
		t.Errorf("EHLO took %v: only the greeting is held", d)
	}
	// Closing the sink does not wait for a held greeting.
	held := dialRaw(t, s.Addr())
	_ = held
	start = time.Now()
	s.Close()
	if d := time.Since(start); d >= delay {
		t.Errorf("Close took %v with a greeting held", d)
	}
}

func TestSinkSlowReplies(t *testing.T) {
	const delay = 400 * time.Millisecond
	s := newSink(t, SinkOptions{ReplyDelay: delay})
	start := time.Now()
	c := dialRaw(t, s.Addr())
	c.reply()
	if d := time.Since(start); d >= delay {
		t.Errorf("greeting after %v: only later replies are slow", d)
	}
	for _, cmd := range []string{"EHLO client.test", "NOOP"} {
		start = time.Now()
		c.send(cmd)
		if got := c.reply(); got != "250" {
			t.Fatalf("%s: %s", cmd, got)
		}
		if d := time.Since(start); d < delay {
			t.Errorf("%s answered after %v, want at least %v", cmd, d, delay)
		}
	}
}

func TestBlackHole(t *testing.T) {
	b, err := NewBlackHole("127.3.255.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for range 2 {
		start := time.Now()
		c, err := net.DialTimeout("tcp", b.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			t.Fatal("connect to the black hole completed")
		}
		if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() || errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connect: %v, want a timeout", err)
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("connect gave up after %v, before its timeout", d)
		}
	}
	// The same address with nothing listening refuses at once: the test
	// tells the two apart.
	addr := b.Addr()
	b.Close()
	if _, err := net.DialTimeout("tcp", addr, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed black hole: %v, want connection refused", err)
	}
	if _, err := NewBlackHole("192.0.2.1:25"); err == nil {
		t.Error("black hole off loopback accepted")
	}
}
