package queuegroups

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"time"

	"fanmail/dsn"
	"fanmail/envelope"
)

// msgState is the live state of one message's share in one queue
// directory: what its journal records say, plus where its envelopes are
// in the group's schedule.
type msgState struct {
	id       string
	received time.Time
	dir      *dir     // the queue directory holding it
	seg      *segment // segment holding the latest full record
	bodyOff  int64    // body's offset within seg's file
	bodyLen  int64
	parts    []partState
	envs     []*envState
	pending  int  // envelopes with at least one pending recipient
	deleted  bool // removed by the operator; outcomes in flight are dropped
	warned   bool // the delay warning went out (queuewarn)
	done     bool // every recipient is final; kept until its DSN is sent

	// For interactive delivery: closed once every envelope has had its
	// first attempt; untried counts those still waiting.
	firstDone chan struct{}
	untried   int
}

// partState is a part's sender and its copy's layout (Part).
type partState struct {
	sender   string
	prefix   []byte
	skip     int64
	insert   []byte
	insertAt int64
}

// hasLayout reports whether the part's copy is more than prefix + body.
func (p *partState) hasLayout() bool { return p.skip != 0 || p.insert != nil }

// copySize is the size of the part's copy of a body of bodyLen bytes.
func (p *partState) copySize(bodyLen int64) int64 {
	return int64(len(p.prefix)+len(p.insert)) + bodyLen - p.skip
}

// open returns the part's copy of the body, which body(off, n) reads.
func (p *partState) open(bodyLen int64, body func(off, n int64) io.Reader) io.Reader {
	if !p.hasLayout() {
		return io.MultiReader(bytes.NewReader(p.prefix), body(0, bodyLen))
	}
	at := bodyLen
	if p.insert != nil {
		at = p.insertAt
	}
	return io.MultiReader(bytes.NewReader(p.prefix), body(p.skip, at-p.skip),
		bytes.NewReader(p.insert), body(at, bodyLen-at))
}

// envState is one envelope's durable state plus its place in the scheduler.
type envState struct {
	msg      *msgState
	index    int
	part     int
	domain   string
	rcpts    []string
	status   []rcptStatus
	replies  []string // last reply per recipient, for queue listings and logs
	attempts int
	next     time.Time // zero: due now
	inflight bool
	tried    bool // has had an attempt in this process
	heapIdx  int  // position in the deferred heap, -1 when not there
}

func (e *envState) pendingCount() int {
	n := 0
	for _, s := range e.status {
		if !s.final() {
			n++
		}
	}
	return n
}

// failedFor reports whether m has a failed recipient whose envelope
// sender may get a DSN.
func (m *msgState) failedFor() bool {
	for _, e := range m.envs {
		if !dsn.Wanted(m.parts[e.part].sender) {
			continue
		}
		for _, s := range e.status {
			if s == rcptFailed {
				return true
			}
		}
	}
	return false
}

// hasInflight reports whether an attempt of one of m's envelopes is in
// progress.
func (m *msgState) hasInflight() bool {
	for _, e := range m.envs {
		if e.inflight {
			return true
		}
	}
	return false
}

// applyUpdate folds a status record into an envelope's state.
func applyUpdate(e *envState, u *statusUpdate) {
	e.attempts = u.attempts
	e.next = u.next
	for _, r := range u.rcpts {
		if r.index < len(e.status) {
			e.status[r.index] = r.status
			e.replies[r.index] = r.reply
		}
	}
}

// inlineBody is the largest body copied into a message record's buffer;
// a bigger one is streamed into the journal by its writer.
const inlineBody = 64 << 10

// encodeMessage writes the full record of a message in its current state.
// The body goes last, so its offset is known from the record's size; a
// body larger than inlineBody is left for the journal writer to copy.
func encodeMessage(m *msgState, body envelope.Body) (record, error) {
	bodyLen := body.Size()
	inline := bodyLen <= inlineBody
	size := 64
	if inline {
		size += int(bodyLen)
	}
	typ := recMessage
	for _, p := range m.parts {
		size += len(p.sender) + len(p.prefix) + len(p.insert) + 24
		if p.hasLayout() {
			typ = recMessageLayout
		}
	}
	for _, e := range m.envs {
		size += len(e.domain) + 16
		for _, r := range e.rcpts {
			size += len(r) + 2
		}
	}
	enc := newEncoder(typ, size)
	enc.str(m.id)
	enc.time(m.received)
	enc.byte1(boolByte(m.warned))
	enc.uvarint(uint64(len(m.parts)))
	for _, p := range m.parts {
		enc.str(p.sender)
		enc.bytes(p.prefix)
		if typ == recMessageLayout {
			enc.uvarint(uint64(p.skip))
			enc.byte1(boolByte(p.insert != nil))
			enc.bytes(p.insert)
			enc.uvarint(uint64(p.insertAt))
		}
	}
	enc.uvarint(uint64(len(m.envs)))
	for _, e := range m.envs {
		enc.uvarint(uint64(e.part))
		enc.str(e.domain)
		enc.uvarint(uint64(e.attempts))
		enc.time(e.next)
		enc.uvarint(uint64(len(e.rcpts)))
		for i, r := range e.rcpts {
			enc.str(r)
			enc.byte1(byte(e.status[i]))
		}
	}
	enc.uvarint(uint64(bodyLen))
	if int64(len(enc.b))+bodyLen > maxRecord {
		return record{}, fmt.Errorf("message of %d bytes is too large for the journal", bodyLen)
	}
	if !inline {
		return record{frame: enc.b, body: body}, nil
	}
	start := len(enc.b)
	enc.b = slices.Grow(enc.b, int(bodyLen))[:start+int(bodyLen)]
	if n, err := body.ReadAt(enc.b[start:], 0); n < int(bodyLen) {
		return record{}, fmt.Errorf("read message body: %w", err)
	}
	return record{frame: enc.frame()}, nil
}

// decodeMessage parses a message record of type typ (recMessage, or
// recMessageLayout with each part's layout); bodyOff is relative to
// payload.
func decodeMessage(typ byte, payload []byte) (m *msgState, bodyOff, bodyLen int, err error) {
	d := &decoder{b: payload}
	m = &msgState{id: d.str(), received: d.time()}
	m.warned = d.byte1() == 1
	nparts := d.count()
	for i := 0; i < nparts && d.err == nil; i++ {
		sender := d.str()
		prefix, _ := d.bytesRef()
		p := partState{sender: sender, prefix: append([]byte(nil), prefix...)}
		if typ == recMessageLayout {
			p.skip = int64(d.uvarint())
			hasInsert := d.byte1() == 1
			insert, _ := d.bytesRef()
			if hasInsert {
				p.insert = append([]byte{}, insert...)
			}
			p.insertAt = int64(d.uvarint())
		}
		m.parts = append(m.parts, p)
	}
	nenvs := d.count()
	for i := 0; i < nenvs && d.err == nil; i++ {
		e := &envState{msg: m, index: i, heapIdx: -1}
		e.part = int(d.uvarint())
		e.domain = d.str()
		e.attempts = int(d.uvarint())
		e.next = d.time()
		n := d.count()
		e.rcpts = make([]string, 0, n)
		e.status = make([]rcptStatus, 0, n)
		for j := 0; j < n && d.err == nil; j++ {
			e.rcpts = append(e.rcpts, d.str())
			e.status = append(e.status, rcptStatus(d.byte1()))
		}
		e.replies = make([]string, len(e.rcpts))
		if e.part >= len(m.parts) {
			d.fail()
		}
		m.envs = append(m.envs, e)
	}
	body, off := d.bytesRef()
	for _, p := range m.parts {
		if d.err == nil && (p.skip > int64(len(body)) || (p.insert != nil && (p.insertAt < p.skip || p.insertAt > int64(len(body))))) {
			d.fail()
		}
	}
	if d.err != nil {
		return nil, 0, 0, fmt.Errorf("message record: %w", d.err)
	}
	return m, off, len(body), nil
}

// statusUpdate is the outcome of one attempt of one envelope.
type statusUpdate struct {
	id       string
	env      int
	attempts int
	next     time.Time
	rcpts    []rcptUpdate
}

type rcptUpdate struct {
	index  int
	status rcptStatus
	reply  string
}

func encodeStatus(u *statusUpdate) []byte {
	enc := newEncoder(recStatus, 32+len(u.rcpts)*48)
	enc.str(u.id)
	enc.uvarint(uint64(u.env))
	enc.uvarint(uint64(u.attempts))
	enc.time(u.next)
	enc.uvarint(uint64(len(u.rcpts)))
	for _, r := range u.rcpts {
		enc.uvarint(uint64(r.index))
		enc.byte1(byte(r.status))
		enc.str(r.reply)
	}
	return enc.frame()
}

func decodeStatus(payload []byte) (*statusUpdate, error) {
	d := &decoder{b: payload}
	u := &statusUpdate{id: d.str(), env: int(d.uvarint()), attempts: int(d.uvarint()), next: d.time()}
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		u.rcpts = append(u.rcpts, rcptUpdate{index: int(d.uvarint()), status: rcptStatus(d.byte1()), reply: d.str()})
	}
	if d.err != nil {
		return nil, fmt.Errorf("status record: %w", d.err)
	}
	return u, nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// encodeID writes a record of typ that carries only a message ID.
func encodeID(typ byte, id string) []byte {
	enc := newEncoder(typ, len(id)+2)
	enc.str(id)
	return enc.frame()
}

func encodeDelete(id string) []byte { return encodeID(recDelete, id) }

// decodeID reads a record written by encodeID.
func decodeID(payload []byte) (string, error) {
	d := &decoder{b: payload}
	id := d.str()
	if d.err != nil {
		return "", fmt.Errorf("id record: %w", d.err)
	}
	return id, nil
}
