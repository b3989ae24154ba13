package queuegroups

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/testutil"
)

// streamedMessage is a post to two big lists, each part's envelopes
// streamed: enough envelope records for several batches, the second
// part declared after the head is out.
func streamedMessage(ids *IDSource, perPart int) *Message {
	m := &Message{ID: ids.Next(), Received: time.Now(), Body: envelope.Bytes("Subject: big\r\n\r\nhello\r\n")}
	for p := range 2 {
		m.Parts = append(m.Parts, Part{Prefix: []byte(fmt.Sprintf("List-Id: <l%d.example.org>\r\n", p)),
			Stream: func(yield func(envelope.Envelope) error) error {
				buf := make([]string, 0, 100)
				for i := 0; i < perPart; i += 100 {
					buf = buf[:0]
					for k := i; k < min(i+100, perPart); k++ {
						buf = append(buf, fmt.Sprintf("member%06d@d%d.test", k, k%50))
					}
					if err := yield(envelope.Envelope{Sender: fmt.Sprintf("owner-l%d@example.org", p), Domain: fmt.Sprintf("d%d.test", i%50), Recipients: buf}); err != nil {
						return err
					}
				}
				return nil
			}})
	}
	return m
}

// TestStreamedPostSurvivesRestart: a post whose envelopes come in
// batches, with a part declared after the head was written, is queued
// whole, recovered whole after a restart, and delivered once to each
// recipient with its own part's header.
func TestStreamedPostSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(dir)
	q := opened(t, cfg, newRecorder(nil))
	const perPart = 20000
	m := streamedMessage(NewIDSource(), perPart)
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if m.Queued() != 2*perPart {
		t.Fatalf("Queued = %d, want %d", m.Queued(), 2*perPart)
	}
	if parts := len(q.groups[DefaultGroup].dirs[0].msgs[m.ID].parts); parts != 2 {
		t.Fatalf("%d parts queued, want 2", parts)
	}
	q.Close(context.Background())

	rec := newRecorder(nil)
	q2 := started(t, cfg, rec)
	waitFor(t, "every recipient", func() bool { return q2.Stats().Messages == 0 })
	if got := rec.total(); got != 2*perPart {
		t.Fatalf("delivered %d, want %d", got, 2*perPart)
	}
	// Each member is on both lists: two deliveries, the last with the
	// second list's header, which came in a part record.
	for _, k := range []int{0, 123, perPart - 1} {
		r := fmt.Sprintf("member%06d@d%d.test", k, k%50)
		if rec.count(r) != 2 {
			t.Errorf("%s delivered %d times, want once per list", r, rec.count(r))
		}
		if !strings.HasPrefix(rec.bodies[r], "List-Id: <l") {
			t.Errorf("%s got %q", r, rec.bodies[r])
		}
	}
}

// TestUncommittedPostIsDropped: a share whose commit record never made
// it (the server died while a big post was being written, before the
// 250) is not delivered after a restart.
func TestUncommittedPostIsDropped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(dir)
	var log testutil.SyncBuffer
	cfg.Logger = textLogger(&log)
	q := opened(t, cfg, newRecorder(nil))
	ids := NewIDSource()
	ms := newMsgState(ids.Next(), time.Now(), nil)
	ms.parts = []partState{{sender: "owner-l@example.org"}}
	head, err := encodeHead(ms, envelope.Bytes("Subject: x\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := q.groups[DefaultGroup].dirs[0]
	if _, _, err := d.j.append(true, false, head, complete(encodeEnvelope(ms.id, 0, 0, "a.test", []string{"x@a.test"}))); err != nil {
		t.Fatal(err)
	}
	q.Close(context.Background())
	rec := newRecorder(nil)
	q2 := started(t, cfg, rec)
	if s := q2.Stats(); s.Messages != 0 {
		t.Errorf("an uncommitted post was recovered: %+v", s)
	}
	if !strings.Contains(log.String(), "dropped a message that was being queued") || !strings.Contains(log.String(), ms.id) {
		t.Errorf("no log line for the dropped post:\n%s", log.String())
	}
}

// TestSplitPostCommittedAtRecovery: a post split over two groups whose
// commit reached one group's journal and not the other's (the server
// died between them) is committed whole at the next start.
func TestSplitPostCommittedAtRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := groupsConfig(dir)
	q := opened(t, cfg, newRecorder(nil))
	id := NewIDSource().Next()
	for _, gname := range []string{DefaultGroup, "b"} {
		ms := newMsgState(id, time.Now(), nil)
		ms.parts = []partState{{sender: "owner-l@example.org"}}
		head, err := encodeHead(ms, envelope.Bytes("Subject: x\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		domain := "a.test"
		if gname == "b" {
			domain = "b.test"
		}
		recs := []record{head, complete(encodeEnvelope(id, 0, 0, domain, []string{"x@" + domain}))}
		if gname == DefaultGroup {
			recs = append(recs, complete(encodeCommit(id, 1)))
		}
		if _, _, err := q.groups[gname].dirs[0].j.append(true, false, recs...); err != nil {
			t.Fatal(err)
		}
	}
	q.Close(context.Background())
	rec := newRecorder(nil)
	q2 := started(t, cfg, rec)
	waitFor(t, "both shares", func() bool { return rec.total() == 2 })
	if rec.count("x@a.test") != 1 || rec.count("x@b.test") != 1 {
		t.Errorf("deliveries %v, want one to each group's recipient", rec.got)
	}
	waitFor(t, "the queue to empty", func() bool { return q2.Stats().Messages == 0 })
}
