package queuegroups

import (
	"context"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
)

// utf8Recorder notes the SMTPUTF8 flag of each message it delivers.
type utf8Recorder struct {
	mu   sync.Mutex
	flag map[string]bool // queue ID → Request.SMTPUTF8
}

func (r *utf8Recorder) Deliver(_ context.Context, req envelope.Request) []envelope.Result {
	r.mu.Lock()
	r.flag[req.QueueID] = req.SMTPUTF8
	r.mu.Unlock()
	res := make([]envelope.Result, len(req.Recipients))
	for i, rcpt := range req.Recipients {
		res[i] = envelope.Result{Recipient: rcpt, Status: envelope.Delivered, Reply: envelope.Reply{Code: 250}}
	}
	return res
}

func (r *utf8Recorder) seen() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for k, v := range r.flag {
		out[k] = v
	}
	return out
}

// The SMTPUTF8 parameter a message came with reaches delivery, at once
// and from the journal after a restart (the head record's flag).
func TestSMTPUTF8Kept(t *testing.T) {
	t.Parallel()
	for _, restart := range []bool{false, true} {
		cfg := testConfig(t.TempDir())
		ids := NewIDSource()
		rec := &utf8Recorder{flag: map[string]bool{}}
		want := map[string]bool{}
		q := opened(t, cfg, rec)
		for _, utf8 := range []bool{true, false} {
			m := testMessage(ids, 2, 1)
			m.SMTPUTF8 = utf8
			want[m.ID] = utf8
			if err := q.Enqueue(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
		if restart {
			q.Close(context.Background())
			q = opened(t, cfg, rec)
		}
		q.Start()
		waitFor(t, "delivery", func() bool { return q.Stats().Messages == 0 })
		if diff := cmp.Diff(want, rec.seen()); diff != "" {
			t.Errorf("restart %v: SMTPUTF8 by queue ID (-want +got):\n%s", restart, diff)
		}
	}
}

// A head record's flags survive encoding; unknown bits are ignored.
func TestHeadFlags(t *testing.T) {
	t.Parallel()
	m := newMsgState("q1", testMessage(NewIDSource(), 1, 1).Received, nil)
	m.utf8, m.warned = true, true
	m.parts = []partState{{sender: "owner@example.org"}}
	rec, err := encodeHead(m, envelope.Bytes("body"))
	if err != nil {
		t.Fatal(err)
	}
	fr := rec.frame[frameHeader+1:]
	d := &decoder{b: fr}
	head, _ := d.bytesRef()
	got, err := decodeHead(head)
	if err != nil {
		t.Fatal(err)
	}
	if !got.utf8 || !got.warned || got.aside {
		t.Errorf("decoded flags utf8 %v warned %v aside %v, want true true false", got.utf8, got.warned, got.aside)
	}
	// A flag from a later format is ignored, not an error.
	flagsAt := 1 + len("q1") + len(appendVarint(m))
	if head[flagsAt] != flagWarned|flagSMTPUTF8 {
		t.Fatalf("flags byte %#x, want %#x", head[flagsAt], flagWarned|flagSMTPUTF8)
	}
	head[flagsAt] |= 0x80
	if got, err := decodeHead(head); err != nil || !got.utf8 {
		t.Errorf("head with an unknown flag bit: %v, utf8 %v", err, got != nil && got.utf8)
	}
}

func appendVarint(m *msgState) []byte {
	e := &encoder{}
	e.time(m.received)
	return e.b
}
