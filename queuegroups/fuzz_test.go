package queuegroups

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"
	"time"

	"fanmail/envelope"
)

// seedMessage is a full record's state part with every field set.
func seedMessage() *msgState {
	m := &msgState{id: "1M8NFX9GAA330E4B", received: time.Unix(1700000000, 5), warned: true, aside: true,
		parts: []partState{{sender: "owner-l@example.org", prefix: []byte("List-Id: <l.example.org>\r\n")}, {sender: ""}}}
	m.envs = []*envState{
		{msg: m, part: 0, domain: "a.test", attempts: 2, next: time.Unix(1700000100, 0), strikes: 1,
			rcpts:   []string{"x@a.test", "y@a.test"},
			status:  []rcptStatus{rcptDelivered, rcptFailed},
			replies: []envelope.Reply{{Code: 250, Text: "ok"}, {Code: 550, Enhanced: "5.1.1", Text: "no", Host: "mx.a.test"}}},
		{msg: m, index: 1, part: 1, domain: "[local]", rcpts: []string{"|prog"}, status: []rcptStatus{rcptPending},
			replies: []envelope.Reply{{}}},
	}
	return m
}

// headOf returns the state part of an encoded message record.
func headOf(t testing.TB, m *msgState) []byte {
	rec, err := encodeMessage(m, envelope.Bytes(nil))
	if err != nil {
		t.Fatal(err)
	}
	d := &decoder{b: rec.frame[frameHeader+1:]}
	head, _ := d.bytesRef()
	return head
}

// FuzzDecodeMessage: any bytes either fail to decode or decode to a
// state that encodes back to a record that decodes to the same.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(headOf(f, seedMessage()))
	f.Add(headOf(f, &msgState{id: "X"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, head []byte) {
		m, err := decodeMessage(head)
		if err != nil {
			return
		}
		again := headOf(t, m)
		m2, err := decodeMessage(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !bytes.Equal(headOf(t, m2), again) {
			t.Fatalf("record changes on a second round trip")
		}
	})
}

// FuzzDecodeStatus: the same for status records.
func FuzzDecodeStatus(f *testing.F) {
	for _, u := range []*statusUpdate{
		{id: "1M8NFX9GAA330E4B", env: 3, kind: attemptDone, attempts: 2, next: time.Unix(1700000000, 0),
			rcpts: []rcptUpdate{{index: 1, status: rcptFailed, reply: envelope.Reply{Code: 550, Enhanced: "5.1.1", Text: "no", Host: "mx"}}}},
		{id: "A", kind: attemptStarted, attempts: 1},
		{id: "B", kind: attemptPanicked},
	} {
		f.Add(encodeStatus(u)[frameHeader+1:])
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		u, err := decodeStatus(payload)
		if err != nil {
			return
		}
		again := encodeStatus(u)[frameHeader+1:]
		u2, err := decodeStatus(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !bytes.Equal(encodeStatus(u2)[frameHeader+1:], again) {
			t.Fatalf("record changes on a second round trip")
		}
	})
}

// FuzzDecodeID covers the records that carry only an ID (delete,
// warned, moved aside) and the segment header.
func FuzzDecodeID(f *testing.F) {
	f.Add(encodeDelete("1M8NFX9GAA330E4B")[frameHeader+1:])
	f.Add(encodeHeader()[frameHeader+1:])
	f.Fuzz(func(t *testing.T, payload []byte) {
		if id, err := decodeID(payload); err == nil {
			if got, err := decodeID(encodeDelete(id)[frameHeader+1:]); err != nil || got != id {
				t.Fatalf("id %q round trips to %q, %v", id, got, err)
			}
		}
		decodeHeader(payload)
	})
}

// FuzzReplaySegment replays arbitrary bytes as a journal segment (in
// memory, as a read-only replay would): replay never fails or panics on
// them, and every message it recovers is whole.
func FuzzReplaySegment(f *testing.F) {
	m := seedMessage()
	full, err := encodeMessage(m, envelope.Bytes("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		f.Fatal(err)
	}
	seg := append(append(append(encodeHeader(), full.frame...),
		encodeStatus(&statusUpdate{id: m.id, env: 1, kind: attemptStarted, attempts: 1})...),
		encodeID(recWarned, m.id)...)
	f.Add(seg)
	bad := bytes.Clone(seg)
	bad[len(encodeHeader())+40] ^= 1
	f.Add(bad)
	f.Add(seg[:len(seg)-3])
	f.Fuzz(func(t *testing.T, data []byte) {
		j := &journal{log: slog.New(slog.DiscardHandler), readOnly: true}
		d := &dir{msgs: map[string]*msgState{}, suspects: map[string]bool{}}
		s := &segment{path: "fuzz.journal"}
		end, err := j.replayFrom(s, bytes.NewReader(data), int64(len(data)), d)
		if err != nil {
			if errors.Is(err, errNewerJournal) {
				return
			}
			t.Fatalf("replay failed: %v", err)
		}
		if end != int64(len(data)) {
			t.Fatalf("replay stopped at %d of %d bytes", end, len(data))
		}
		for id, m := range d.msgs {
			if m.id != id || m.bodyOff+m.bodyLen > int64(len(data)) {
				t.Fatalf("message %q: body at %d+%d of %d bytes", id, m.bodyOff, m.bodyLen, len(data))
			}
			for _, e := range m.envs {
				if len(e.status) != len(e.rcpts) || len(e.replies) != len(e.rcpts) || e.part >= len(m.parts) {
					t.Fatalf("message %q: envelope %d is not whole", id, e.index)
				}
			}
		}
	})
}
