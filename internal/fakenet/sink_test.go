package fakenet

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"fanmail/internal/testutil"
)

const testMsg = "Message-ID: <1@test>\r\nSubject: hi\r\n\r\nhello\r\n"

func newSink(t *testing.T, opts SinkOptions) *Sink {
	t.Helper()
	opts.Timeout = 5 * time.Second
	s, err := NewSink(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = 2 * time.Second
	c.SubmissionTimeout = 2 * time.Second
	t.Cleanup(func() { c.Close() })
	return c
}

// waitSlot dials addr and says HELO helo until the sink takes the
// session, failing the test after two seconds of refusals.
func waitSlot(t *testing.T, addr, helo string) {
	t.Helper()
	var err error
	if !testutil.Poll(2*time.Second, 10*time.Millisecond, func() bool {
		err = dial(t, addr).Hello(helo)
		return err == nil
	}) {
		t.Fatalf("slot never freed: %v", err)
	}
}

// send runs one transaction and returns the RCPT errors and the DATA error.
func send(t *testing.T, c *smtp.Client, from string, to []string, msg string) ([]error, error) {
	t.Helper()
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("hello: %v", err)
	}
	if err := c.Mail(from, &smtp.MailOptions{Size: int64(len(msg))}); err != nil {
		t.Fatalf("mail: %v", err)
	}
	var rcptErrs []error
	accepted := 0
	for _, r := range to {
		err := c.Rcpt(r, nil)
		rcptErrs = append(rcptErrs, err)
		if err == nil {
			accepted++
		}
	}
	if accepted == 0 {
		return rcptErrs, nil
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("data: %v", err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	return rcptErrs, w.Close()
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	if err != nil {
		return -1
	}
	return 250
}

func TestSinkRecordsDeliveriesAndDuplicates(t *testing.T) {
	s := newSink(t, SinkOptions{Addr: "127.0.0.7:0"})
	c := dial(t, s.Addr())
	if _, err := send(t, c, "owner@list.test", []string{"a@x.test", "b@x.test"}, testMsg); err != nil {
		t.Fatalf("data: %v", err)
	}
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SIZE"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("extension %s not advertised", ext)
		}
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	// The same message to a again is a duplicate.
	if _, err := send(t, c, "owner@list.test", []string{"a@x.test"}, testMsg); err != nil {
		t.Fatalf("data: %v", err)
	}
	c.Quit()

	got := s.Deliveries()
	if len(got) != 2 {
		t.Fatalf("got %d deliveries, want 2", len(got))
	}
	d := got[0]
	d.RemoteAddr = ""
	want := Delivery{
		From:       "owner@list.test",
		Recipients: []string{"a@x.test", "b@x.test"},
		Data:       []byte(testMsg),
		Key:        "<1@test>",
		Size:       int64(len(testMsg)),
		SizeParam:  int64(len(testMsg)),
		BodyParam:  "8BITMIME",
		Helo:       "client.test",
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("delivery (-want +got):\n%s", diff)
	}
	wantStats := SinkStats{
		Connections: 1, MaxConcurrentConns: 1, MaxOpenConns: 1, Transactions: 2,
		RcptAccepted: 3, RecipientsDelivered: 3, Bytes: 2 * int64(len(testMsg)), Duplicates: 1,
	}
	if diff := cmp.Diff(wantStats, s.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if n := s.RecipientCount("a@x.test"); n != 2 {
		t.Errorf("RecipientCount(a) = %d, want 2", n)
	}
	if n := s.PairCount("<1@test>", "b@x.test"); n != 1 {
		t.Errorf("PairCount(b) = %d, want 1", n)
	}
}

func TestSinkHooks(t *testing.T) {
	s := newSink(t, SinkOptions{
		RcptHook: RcptReplies{
			"busy": {Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "full"},
			"gone": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
		}.Hook,
		DataHook: func(d Delivery) error {
			if strings.Contains(string(d.Data), "reject") {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "spam"}
			}
			return nil
		},
	})
	c := dial(t, s.Addr())
	rcptErrs, dataErr := send(t, c, "", []string{"ok@x.test", "busy@x.test", "gone@x.test"}, testMsg)
	var codes []int
	for _, err := range rcptErrs {
		codes = append(codes, code(err))
	}
	if diff := cmp.Diff([]int{250, 452, 550}, codes); diff != "" {
		t.Errorf("rcpt codes (-want +got):\n%s", diff)
	}
	if dataErr != nil {
		t.Errorf("data: %v", dataErr)
	}
	c.Reset()
	if _, err := send(t, c, "", []string{"ok@x.test"}, "Subject: reject me\r\n\r\n"); code(err) != 554 {
		t.Errorf("data reply = %v, want 554", err)
	}
	st := s.Stats()
	if st.Transactions != 1 || st.RcptRejected != 2 || st.RecipientsDelivered != 1 {
		t.Errorf("stats = %+v, want 1 transaction, 2 rejected rcpts, 1 delivered", st)
	}
	if got := s.Deliveries()[0].From; got != "" {
		t.Errorf("null sender recorded as %q", got)
	}
}

func TestSinkConnectionRefusals(t *testing.T) {
	t.Run("MaxConns", func(t *testing.T) {
		s := newSink(t, SinkOptions{MaxConns: 1})
		first := dial(t, s.Addr())
		if err := first.Hello("a.test"); err != nil {
			t.Fatal(err)
		}
		second := dial(t, s.Addr())
		if err := second.Hello("b.test"); code(err) != 421 {
			t.Errorf("second connection: %v, want 421", err)
		}
		first.Quit()
		// The slot frees once the first connection is gone.
		waitSlot(t, s.Addr(), "c.test")
		if st := s.Stats(); st.Rejected < 1 || st.MaxConcurrentConns != 1 {
			t.Errorf("stats = %+v, want >=1 rejected, max 1 concurrent", st)
		}
	})
	t.Run("ConnHook", func(t *testing.T) {
		s := newSink(t, SinkOptions{ConnHook: func(string) *smtp.SMTPError {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "go away"}
		}})
		c := dial(t, s.Addr())
		err := c.Hello("a.test")
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 554 || se.Message != "go away" {
			t.Errorf("greeting: %v, want 554 go away", err)
		}
	})
}

func TestSinkDiscardBodiesAndSizeLimit(t *testing.T) {
	s := newSink(t, SinkOptions{DiscardBodies: true, MaxMessageBytes: 100})
	c := dial(t, s.Addr())
	body := "Subject: no id\r\n\r\nbody\r\n"
	if _, err := send(t, c, "a@b.test", []string{"r@x.test"}, body); err != nil {
		t.Fatal(err)
	}
	if _, v := c.Extension("SIZE"); v != "100" {
		t.Errorf("SIZE = %q, want 100", v)
	}
	d := s.Deliveries()[0]
	if d.Data != nil || !strings.HasPrefix(d.Key, "sha256:") || d.Size != int64(len(body)) {
		t.Errorf("delivery = %+v, want no data, sha256 key, size %d", d, len(body))
	}
	c.Reset()
	if err := c.Mail("a@b.test", &smtp.MailOptions{Size: 1000}); code(err) != 552 {
		t.Errorf("oversized MAIL: %v, want 552", err)
	}
}

func TestSinkWaitRecipients(t *testing.T) {
	s := newSink(t, SinkOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.WaitRecipients(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitRecipients on empty sink = %v, want deadline exceeded", err)
	}

	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			c := dial(t, s.Addr())
			msg := strings.Replace(testMsg, "<1@", "<"+string(rune('a'+i))+"@", 1)
			if _, err := send(t, c, "", []string{"a@x.test", "b@x.test"}, msg); err != nil {
				t.Error(err)
			}
			c.Quit()
		})
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitRecipients(ctx, 10); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if d := s.Duplicates(); d != 0 {
		t.Errorf("Duplicates = %d, want 0", d)
	}
	if n := s.Transactions(); n != 5 {
		t.Errorf("Transactions = %d, want 5", n)
	}
}

func TestMessageKey(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"plain", "Message-ID: <a@b>\r\n\r\nx", "<a@b>"},
		{"case and space", "subject: s\r\nmessage-id:   <c@d>  \r\n\r\n", "<c@d>"},
		{"folded", "Message-Id:\r\n <e@f>\r\n\r\n", "<e@f>"},
		{"in body only", "Subject: s\r\n\r\nMessage-ID: <no@no>\r\n", "sha256:"},
		{"bare LF", "Message-ID: <g@h>\n\nbody", "<g@h>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MessageKey([]byte(tt.data))
			if tt.want == "sha256:" {
				if !strings.HasPrefix(got, "sha256:") || len(got) != 7+64 {
					t.Errorf("MessageKey = %q, want a sha256 key", got)
				}
				return
			}
			if got != tt.want {
				t.Errorf("MessageKey = %q, want %q", got, tt.want)
			}
		})
	}
}
