package queuegroups

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
)

// TestPartLayout: parts that replace the body's header and put bytes in
// (a list's copy with a footer) are delivered as laid out, from a small
// body and from one the journal writer streams, and the layout survives
// a restart.
func TestPartLayout(t *testing.T) {
	t.Parallel()
	for _, size := range []int{100, 3 * inlineBody} {
		t.Run(map[int]string{100: "inline", 3 * inlineBody: "streamed"}[size], func(t *testing.T) {
			t.Parallel()
			header := "Subject: hi\r\nList-Id: <other.example>\r\n\r\n"
			text := strings.Repeat("x", size-len(header)-len("tail\r\n")) + "tail\r\n"
			body := header + text
			hl := int64(len(header))
			m := &Message{ID: NewIDSource().Next(), Received: time.Now(), Body: envelope.Bytes(body), Parts: []Part{
				{Prefix: []byte("Received: by test\r\n"),
					Envelopes: []envelope.Envelope{{Sender: "s@x.test", Domain: "a.test", Recipients: []string{"plain@a.test"}}}},
				{Prefix: []byte("List-Id: <l.example>\r\nSubject: [l] hi\r\n\r\n"), Skip: hl,
					Insert: []byte("-- \r\nfooter\r\n"), InsertAt: int64(len(body)),
					Envelopes: []envelope.Envelope{{Sender: "owner-l@x.test", Domain: "b.test", Recipients: []string{"footer@b.test"}}}},
				{Prefix: []byte("H: 1\r\n\r\n"), Skip: hl, Insert: []byte("<in>"), InsertAt: hl + 1,
					Envelopes: []envelope.Envelope{{Sender: "owner-l@x.test", Domain: "c.test", Recipients: []string{"middle@c.test"}}}},
			}}
			want := map[string]string{
				"plain@a.test":  "Received: by test\r\n" + body,
				"footer@b.test": "List-Id: <l.example>\r\nSubject: [l] hi\r\n\r\n" + text + "-- \r\nfooter\r\n",
				"middle@c.test": "H: 1\r\n\r\n" + text[:1] + "<in>" + text[1:],
			}
			dir := t.TempDir()
			cfg := testConfig(dir)
			cfg.RetryMin, cfg.RetryMax, cfg.QueueReturn = time.Hour, time.Hour, 24*time.Hour
			first := newRecorder(func(string, int) envelope.Status { return envelope.Deferred })
			q := started(t, cfg, first)
			if err := q.Enqueue(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "first attempts", func() bool { return q.Stats().Deferred == 3 })
			if !q.Has(m.ID) || q.Has("NOSUCHID") {
				t.Errorf("Has(%s) = %v, Has(NOSUCHID) = %v", m.ID, q.Has(m.ID), q.Has("NOSUCHID"))
			}
			q.Close(context.Background())

			second := newRecorder(nil)
			q2 := started(t, cfg, second)
			q2.Flush("", "")
			waitFor(t, "delivery after restart", func() bool { return q2.Stats().Messages == 0 })
			if diff := cmp.Diff(want, second.bodies); diff != "" {
				t.Errorf("copies after restart (-want +got):\n%s", diff)
			}
			if q2.Has(m.ID) {
				t.Error("Has is true for a message that finished")
			}
		})
	}
}

func TestPartLayoutChecked(t *testing.T) {
	t.Parallel()
	q := started(t, testConfig(t.TempDir()), newRecorder(nil))
	env := []envelope.Envelope{{Sender: "s@x.test", Domain: "a.test", Recipients: []string{"r@a.test"}}}
	for _, p := range []Part{
		{Skip: 11, Envelopes: env},
		{Skip: 2, Insert: []byte("x"), InsertAt: 1, Envelopes: env},
		{Insert: []byte("x"), InsertAt: 11, Envelopes: env},
		{Skip: -1, Envelopes: env},
	} {
		m := &Message{ID: NewIDSource().Next(), Received: time.Now(), Body: envelope.Bytes("0123456789"), Parts: []Part{p}}
		if err := q.Enqueue(context.Background(), m); err == nil || !strings.Contains(err.Error(), "does not fit") {
			t.Errorf("layout skip %d insert at %d: Enqueue = %v, want an error", p.Skip, p.InsertAt, err)
		}
	}
}
