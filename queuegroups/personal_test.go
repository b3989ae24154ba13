package queuegroups

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
)

// personalRecorder delivers everything and notes, per recipient, the
// Personal of the request that carried it.
type personalRecorder struct {
	mu   sync.Mutex
	seen map[string]envelope.Personal
	body map[string]string
}

func (r *personalRecorder) Deliver(_ context.Context, env envelope.Request) []envelope.Result {
	data, _ := io.ReadAll(env.Open())
	r.mu.Lock()
	defer r.mu.Unlock()
	res := make([]envelope.Result, len(env.Recipients))
	for i, rcpt := range env.Recipients {
		r.seen[rcpt] = env.Personal
		r.body[rcpt] = string(data)
		res[i] = envelope.Result{Recipient: rcpt, Status: envelope.Delivered, Reply: envelope.Reply{Code: 250}}
	}
	return res
}

// TestPersonalPartsSurviveRestart: the Personal of each part, with or
// without a layout, is stored with the part and handed to delivery with
// every envelope of it, after a restart too; parts that do not
// personalize get none.
func TestPersonalPartsSurviveRestart(t *testing.T) {
	t.Parallel()
	body := "Subject: hi\r\n\r\nbody\r\n"
	verp := envelope.Personal{Mode: envelope.PersonalizeVERP, Template: []byte("verp template")}
	full := envelope.Personal{Mode: envelope.PersonalizeFull, Template: []byte("full template")}
	env := func(domain, rcpt string) []envelope.Envelope {
		return []envelope.Envelope{{Sender: "l-bounces@x.test", Domain: domain, Recipients: []string{rcpt}}}
	}
	m := &Message{ID: NewIDSource().Next(), Received: time.Now(), Body: envelope.Bytes(body), Parts: []Part{
		{Prefix: []byte("Received: by test\r\n"), Envelopes: env("a.test", "plain@a.test")},
		{Prefix: []byte("Received: by test\r\n"), Personal: verp, Envelopes: env("b.test", "verp@b.test")},
		{Prefix: []byte("Subject: [l] hi\r\n\r\n"), Skip: 15, Personal: full, Envelopes: env("c.test", "full@c.test")},
	}}
	dir := t.TempDir()
	cfg := testConfig(dir)
	q := opened(t, cfg, newRecorder(nil))
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	q.Close(context.Background())
	rec := &personalRecorder{seen: map[string]envelope.Personal{}, body: map[string]string{}}
	q2 := started(t, cfg, rec)
	waitFor(t, "delivery after restart", func() bool { return q2.Stats().Messages == 0 })
	want := map[string]envelope.Personal{"plain@a.test": {}, "verp@b.test": verp, "full@c.test": full}
	if diff := cmp.Diff(want, rec.seen); diff != "" {
		t.Errorf("Personal per recipient (-want +got):\n%s", diff)
	}
	if got := rec.body["full@c.test"]; got != "Subject: [l] hi\r\n\r\nbody\r\n" {
		t.Errorf("full copy = %q", got)
	}
}

// TestPersonalCodec: heads and part records carry Personal only for
// personalized parts, so one without them encodes as before, and every
// shape reads back as written.
func TestPersonalCodec(t *testing.T) {
	t.Parallel()
	full := envelope.Personal{Mode: envelope.PersonalizeFull, Template: []byte{1, 2, 3}}
	plain := partState{sender: "a@x.test", prefix: []byte("P: 1\r\n")}
	laid := partState{sender: "b@x.test", prefix: []byte("P: 2\r\n\r\n"), skip: 4}
	pers := partState{sender: "c@x.test", prefix: []byte("P: 3\r\n"), personal: full}
	for _, parts := range [][]partState{{plain}, {laid}, {pers}, {plain, pers}, {laid, pers, plain}} {
		m := newMsgState("ID1", time.Unix(1, 0), nil)
		m.parts = parts
		rec, err := encodeHead(m, envelope.Bytes("0123456789"))
		if err != nil {
			t.Fatal(err)
		}
		_, payload, _, err := readFrameAt(bytes.NewReader(rec.frame), 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeHead(payload)
		if err != nil {
			t.Fatalf("decode head of %d parts: %v", len(parts), err)
		}
		if diff := cmp.Diff(parts, got.parts, cmp.AllowUnexported(partState{}), cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })); diff != "" {
			t.Errorf("parts (-want +got):\n%s", diff)
		}
		for i, p := range parts {
			_, payload, _, err := readFrameAt(bytes.NewReader(encodePart("ID1", i, p)), 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _, back, err := decodePart(payload)
			if err != nil || !cmp.Equal(p, back, cmp.AllowUnexported(partState{}), cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })) {
				t.Errorf("part %+v reads back as %+v, %v", p, back, err)
			}
		}
	}
	// Without a personalized part the head is what it always was: the
	// layouts only when a part has one, and nothing after them.
	m := newMsgState("ID1", time.Unix(1, 0), nil)
	m.parts = []partState{plain}
	a, _ := encodeHead(m, envelope.Bytes("x"))
	m.parts = []partState{{sender: plain.sender, prefix: plain.prefix, personal: envelope.Personal{}}}
	b, _ := encodeHead(m, envelope.Bytes("x"))
	if !bytes.Equal(a.frame, b.frame) {
		t.Error("an unpersonalized part changes the head record")
	}
}
