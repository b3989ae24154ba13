package queuegroups_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/delivery"
	"fanmail/envelope"
	"fanmail/internal/fakenet"
	"fanmail/queuegroups"
)

// TestDSNWhileOthersDeferredRealSinks: the real queue and delivery agent
// against in-process SMTP sinks. One recipient of a post is refused with
// 550 and two others are greylisted (451); the DSN naming the refused
// one reaches the sender's sink while the two are still deferred in the
// queue. When they later fail too, a second DSN names only them.
func TestDSNWhileOthersDeferredRealSinks(t *testing.T) {
	t.Parallel()
	var waitRefuses atomic.Bool
	sink := func(hook func(from, to string) error) *fakenet.Sink {
		s, err := fakenet.NewSink(fakenet.SinkOptions{Addr: "127.0.0.1:0", Timeout: 5 * time.Second, RcptHook: hook})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	refuse := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	failSink := sink(func(_, to string) error {
		if strings.HasPrefix(to, "gone@") {
			return refuse
		}
		return nil
	})
	waitSink := sink(func(_, _ string) error {
		if waitRefuses.Load() {
			return refuse
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
	})
	senderSink := sink(nil)
	agent, err := delivery.New(delivery.Config{
		Resolvers: []string{"127.0.0.1:1"}, // never asked: every domain is routed
		Routes: map[string]string{"fail.test": failSink.Addr(), "wait.test": waitSink.Addr(),
			"sender.test": senderSink.Addr()},
		HELO: "fanmail.test", ConnectTimeout: 2 * time.Second, CommandTimeout: 2 * time.Second, DataTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close() })
	cfg := hourSpool(t, 4)
	cfg.Hostname = "fanmail.test"
	q := startSpool(t, cfg, agent, 0)

	m := &queuegroups.Message{ID: queuegroups.NewIDSource().Next(), Received: time.Now(),
		Body: envelope.Bytes("Message-ID: <p1@sender.test>\r\nSubject: hi\r\n\r\nhello\r\n"),
		Parts: []queuegroups.Part{{Envelopes: []envelope.Envelope{
			{Sender: "poster@sender.test", Domain: "fail.test", Recipients: []string{"gone@fail.test", "ok@fail.test"}},
			{Sender: "poster@sender.test", Domain: "wait.test", Recipients: []string{"w1@wait.test", "w2@wait.test"}},
		}}}}
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first DSN", func() bool { return len(senderSink.Deliveries()) == 1 })
	// The DSN is itself queued until its own delivery is settled, a
	// moment after the sink has it; the greylisted two wait an hour.
	waitUntil(t, "the DSN settled, the 2 greylisted still deferred", func() bool {
		s := q.Stats()
		return s.Recipients == 2 && s.Deferred == 1
	})
	first := senderSink.Deliveries()[0]
	if first.From != "" || len(first.Recipients) != 1 || first.Recipients[0] != "poster@sender.test" {
		t.Errorf("first DSN envelope %q -> %v", first.From, first.Recipients)
	}
	if got := reported(t, first.Data); strings.Join(got, " ") != "gone@fail.test" {
		t.Errorf("first DSN reports %v, want gone@fail.test alone", got)
	}
	if failSink.RecipientCount("ok@fail.test") != 1 {
		t.Errorf("ok@fail.test got %d copies", failSink.RecipientCount("ok@fail.test"))
	}

	waitRefuses.Store(true)
	q.Flush("", "")
	waitUntil(t, "the queue to empty", func() bool { return q.Stats().Messages == 0 && len(senderSink.Deliveries()) == 2 })
	if got := reported(t, senderSink.Deliveries()[1].Data); strings.Join(got, " ") != "w1@wait.test w2@wait.test" {
		t.Errorf("second DSN reports %v, want the two greylisted recipients", got)
	}
}

// reported returns the Final-Recipients of a DSN, in order.
func reported(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(queuegroups.StatusFields(t, body), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Final-Recipient: rfc822; "); ok {
			out = append(out, v)
		}
	}
	return out
}
