package queuegroups

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"fanmail/envelope"
)

// seedMessage is a head with every field set.
func seedMessage() *msgState {
	m := newMsgState("1M8NFX9GAA330E4B", time.Unix(1700000000, 5), nil)
	m.warned, m.aside = true, true
	m.parts = []partState{{sender: "owner-l@example.org", prefix: []byte("List-Id: <l.example.org>\r\n")}, {sender: ""}}
	return m
}

// headOf returns the payload of m's head record without the body.
func headOf(t testing.TB, m *msgState) []byte {
	rec, err := encodeHead(m, envelope.Bytes(nil))
	if err != nil {
		t.Fatal(err)
	}
	d := &decoder{b: rec.frame[frameHeader+1:]}
	head, _ := d.bytesRef()
	return head
}

// FuzzDecodeHead: any bytes either fail to decode or decode to a head
// that encodes back to the same bytes.
func FuzzDecodeHead(f *testing.F) {
	f.Add(headOf(f, seedMessage()))
	f.Add(headOf(f, newMsgState("X", time.Time{}, nil)))
	laid := seedMessage()
	laid.parts[0].skip, laid.parts[0].insert, laid.parts[0].insertAt = 10, []byte("footer"), 20
	f.Add(headOf(f, laid))
	personal := seedMessage()
	personal.parts[0].personal = envelope.Personal{Mode: envelope.PersonalizeFull, Template: []byte("tmpl")}
	f.Add(headOf(f, personal))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, head []byte) {
		m, err := decodeHead(head)
		if err != nil {
			return
		}
		again := headOf(t, m)
		m2, err := decodeHead(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !bytes.Equal(headOf(t, m2), again) {
			t.Fatalf("record changes on a second round trip")
		}
	})
}

// FuzzDecodeEnvelope covers envelope, part, reported and commit records.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(encodeEnvelope("1M8NFX9GAA330E4B", 3, 1, "a.test", []string{"x@a.test", "y@a.test"})[frameHeader+1:])
	f.Add(encodePart("1M8NFX9GAA330E4B", 2, partState{sender: "s@x", prefix: []byte("P: 1\r\n")})[frameHeader+1:])
	f.Add(encodePart("1M8NFX9GAA330E4B", 2, partState{sender: "s@x", prefix: []byte("P: 1\r\n\r\n"),
		skip: 40, insert: []byte("-- \r\nfooter\r\n"), insertAt: 900})[frameHeader+1:])
	f.Add(encodePart("1M8NFX9GAA330E4B", 2, partState{sender: "s@x", prefix: []byte("P: 1\r\n"),
		personal: envelope.Personal{Mode: envelope.PersonalizeVERP, Template: []byte("t")}})[frameHeader+1:])
	f.Add(encodeCommit("1M8NFX9GAA330E4B", 7)[frameHeader+1:])
	f.Add(encodeReported("1M8NFX9GAA330E4B", []rcptRef{{0, 3}, {7, 0}})[frameHeader+1:])
	f.Fuzz(func(t *testing.T, payload []byte) {
		// Each record that decodes encodes to bytes that decode to the
		// same record.
		if r, err := decodeEnvelope(payload); err == nil {
			again := encodeEnvelope(r.id, r.index, r.part, r.domain, r.rcpts)[frameHeader+1:]
			r2, err := decodeEnvelope(again)
			if err != nil || !bytes.Equal(encodeEnvelope(r2.id, r2.index, r2.part, r2.domain, r2.rcpts)[frameHeader+1:], again) {
				t.Fatalf("envelope record does not round trip: %v", err)
			}
		}
		if id, i, p, err := decodePart(payload); err == nil {
			again := encodePart(id, i, p)[frameHeader+1:]
			id2, i2, p2, err := decodePart(again)
			if err != nil || id2 != id || i2 != i || p2.sender != p.sender || !bytes.Equal(p2.prefix, p.prefix) ||
				p2.skip != p.skip || (p2.insert == nil) != (p.insert == nil) || !bytes.Equal(p2.insert, p.insert) || p2.insertAt != p.insertAt ||
				p2.personal.Mode != p.personal.Mode || !bytes.Equal(p2.personal.Template, p.personal.Template) {
				t.Fatalf("part record does not round trip: %v", err)
			}
		}
		if id, refs, err := decodeReported(payload); err == nil {
			id2, refs2, err := decodeReported(encodeReported(id, refs)[frameHeader+1:])
			if err != nil || id2 != id || !slices.Equal(refs, refs2) {
				t.Fatalf("reported record does not round trip: %v", err)
			}
		}
		if id, n, err := decodeCommit(payload); err == nil {
			if id2, n2, err := decodeCommit(encodeCommit(id, n)[frameHeader+1:]); err != nil || id2 != id || n2 != n {
				t.Fatalf("commit record does not round trip: %v", err)
			}
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
	head, err := encodeHead(m, envelope.Bytes("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		f.Fatal(err)
	}
	var seg []byte
	for _, r := range [][]byte{encodeHeader(), head.frame,
		encodeEnvelope(m.id, 0, 0, "a.test", []string{"x@a.test", "y@a.test"}),
		encodePart(m.id, 2, partState{sender: "s@b.test"}),
		encodeEnvelope(m.id, 1, 2, "b.test", []string{"z@b.test"}),
		encodeCommit(m.id, 2),
		encodeStatus(&statusUpdate{id: m.id, env: 1, kind: attemptStarted, attempts: 1}),
		encodeStatus(&statusUpdate{id: m.id, env: 0, attempts: 1, rcpts: []rcptUpdate{{index: 1, status: rcptFailed, reply: envelope.Reply{Code: 550}}}}),
		encodeID(recWarned, m.id)} {
		seg = append(seg, r...)
	}
	f.Add(seg)
	bad := bytes.Clone(seg)
	bad[len(encodeHeader())+40] ^= 1
	f.Add(bad)
	f.Add(seg[:len(seg)-3])
	f.Fuzz(func(t *testing.T, data []byte) {
		j := &journal{log: slog.New(slog.DiscardHandler), readOnly: true}
		d := &dir{msgs: map[string]*msgState{}, pending: map[string]*msgState{}, suspects: map[string]bool{}}
		s := &segment{path: "fuzz.journal"}
		end, err := j.replayFrom(s, bytes.NewReader(data), int64(len(data)), d)
		if err != nil {
			if errors.Is(err, errJournalVersion) {
				return
			}
			t.Fatalf("replay failed: %v", err)
		}
		if end != int64(len(data)) {
			t.Fatalf("replay stopped at %d of %d bytes", end, len(data))
		}
		for id, m := range d.msgs {
			if m.id != id || m.bodyOff+m.bodyLen > int64(len(data)) || !m.committed {
				t.Fatalf("message %q: body at %d+%d of %d bytes", id, m.bodyOff, m.bodyLen, len(data))
			}
			if len(m.failed) != len(m.parts) || m.pendingRcpts < 0 || m.pendingRcpts > m.total || m.pendingEnvs < 0 {
				t.Fatalf("message %q: counts do not add up: %+v", id, m)
			}
			for _, s := range m.slots {
				if int(s.part) >= len(m.parts) || int(s.domain) >= len(m.domains) {
					t.Fatalf("message %q: slot %+v out of range", id, s)
				}
			}
		}
	})
}
