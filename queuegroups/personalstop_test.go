package queuegroups_test

import (
	"context"
	"fmt"
	"path/filepath"
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

// verpCopies is the seam delivery asks for each member's copy: a VERP
// sender, no header.
type verpCopies struct{}

func (verpCopies) Member(_ envelope.Personal, _, rcpt string) (envelope.MemberCopy, error) {
	local, domain, _ := strings.Cut(rcpt, "@")
	return envelope.MemberCopy{Sender: "l-bounces+" + local + "=" + domain + "@lists.test"}, nil
}

// TestPersonalStopMidEnvelope: an envelope of 40 members of a list that
// personalizes is one transaction per member; the queue is closed while
// the 21st member's transaction hangs, with the first 20 done. After a
// restart the remaining 20 are delivered and nobody gets the post twice:
// each member's outcome was recorded as its own transaction ended.
func TestPersonalStopMidEnvelope(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var hung atomic.Int32
	var hold atomic.Bool
	hold.Store(true)
	sink, err := fakenet.NewSink(fakenet.SinkOptions{Addr: "127.0.0.1:0", Timeout: 5 * time.Second,
		DataHook: func(d fakenet.Delivery) error {
			if hold.Load() && d.Recipients[0] == "m20@p.test" {
				hung.Add(1)
				<-release
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "aborted"}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	dir := t.TempDir()
	cfg := queuegroups.Config{
		Groups: []queuegroups.GroupConfig{
			{Name: queuegroups.DefaultGroup, Dirs: []string{dir}, Runners: 4},
			{Name: queuegroups.ControlGroup, Dirs: []string{filepath.Join(dir, "control")}, Runners: 1},
		},
		RetryMin: 10 * time.Millisecond, RetryMax: 10 * time.Millisecond, QueueReturn: time.Hour,
	}
	open := func() *queuegroups.Queue {
		agent, err := delivery.New(delivery.Config{Resolvers: []string{"127.0.0.1:1"},
			Routes: map[string]string{"p.test": sink.Addr()}, Personalizer: verpCopies{},
			HELO: "fanmail.test", ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { agent.Close() })
		q, err := queuegroups.Open(cfg, agent)
		if err != nil {
			t.Fatal(err)
		}
		q.Start()
		return q
	}
	var members []string
	for i := range 40 {
		members = append(members, fmt.Sprintf("m%02d@p.test", i))
	}
	m := &queuegroups.Message{ID: queuegroups.NewIDSource().Next(), Received: time.Now(),
		Body: envelope.Bytes("Subject: hi\r\n\r\nhello\r\n"),
		Parts: []queuegroups.Part{{Personal: envelope.Personal{Mode: envelope.PersonalizeVERP},
			Envelopes: []envelope.Envelope{{Sender: "l-bounces@lists.test", Domain: "p.test", Recipients: members}}}}}
	q := open()
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the 21st member's transaction", func() bool { return hung.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	q.Close(ctx) // the deadline interrupts the hung transaction
	cancel()
	hold.Store(false)
	close(release)
	if got := sink.RecipientsDelivered(); got != 20 {
		t.Fatalf("%d members delivered before the stop, want 20", got)
	}

	q2 := open()
	waitUntil(t, "the rest after the restart", func() bool { return q2.Stats().Messages == 0 })
	for _, mem := range members {
		if n := sink.RecipientCount(mem); n != 1 {
			t.Errorf("%s got %d copies, want 1", mem, n)
		}
	}
	for _, d := range sink.Deliveries() {
		local, _, _ := strings.Cut(d.Recipients[0], "@")
		if len(d.Recipients) != 1 || d.From != "l-bounces+"+local+"=p.test@lists.test" {
			t.Errorf("transaction from %q to %v, want the member's VERP sender, one recipient", d.From, d.Recipients)
		}
	}
	if st := sink.Stats(); st.Transactions != 40 || st.Duplicates != 0 {
		t.Errorf("%d transactions, %d duplicates; want 40, 0", st.Transactions, st.Duplicates)
	}
}
