package queuegroups

import (
	"encoding/binary"
	"fmt"
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
	aside    bool // moved aside: attempts panicked or crashed the server too often

	// For interactive delivery: closed once every envelope has had its
	// first attempt; untried counts those still waiting.
	firstDone chan struct{}
	untried   int
}

type partState struct {
	sender string
	prefix []byte
}

// envState is one envelope's durable state plus its place in the scheduler.
type envState struct {
	msg      *msgState
	index    int
	part     int
	domain   string
	rcpts    []string
	status   []rcptStatus
	replies  []envelope.Reply // last reply per recipient, for listings and DSNs
	attempts int
	next     time.Time // zero: due now
	// strikes counts the attempts in a row that panicked or never ended
	// (the server died during them); open says an attempt was recorded
	// as started and has no outcome yet.
	strikes  int
	open     bool
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
	switch u.kind {
	case attemptStarted:
		if e.open {
			e.strikes++ // the attempt before never ended: the server died
		}
		e.open = true
		return
	case attemptPanicked:
		e.open = false
		e.strikes++
	default:
		e.open = false
		e.strikes = 0
	}
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

// Message record flags.
const (
	flagWarned byte = 1 << iota
	flagAside
)

// encodeMessage writes the full record of a message in its current
// state: every envelope with each recipient's status and last reply,
// then the body. The payload is uvarint(length of what precedes the
// body), that part, and the body, so replay can read the state without
// holding the body. A body larger than inlineBody is left for the
// journal writer to copy.
func encodeMessage(m *msgState, body envelope.Body) (record, error) {
	head := &encoder{b: make([]byte, 0, headSize(m))}
	head.str(m.id)
	head.time(m.received)
	var flags byte
	if m.warned {
		flags |= flagWarned
	}
	if m.aside {
		flags |= flagAside
	}
	head.byte1(flags)
	head.uvarint(uint64(len(m.parts)))
	for _, p := range m.parts {
		head.str(p.sender)
		head.bytes(p.prefix)
	}
	head.uvarint(uint64(len(m.envs)))
	for _, e := range m.envs {
		head.uvarint(uint64(e.part))
		head.str(e.domain)
		head.uvarint(uint64(e.attempts))
		head.time(e.next)
		head.uvarint(uint64(e.strikes))
		head.uvarint(uint64(len(e.rcpts)))
		for i, r := range e.rcpts {
			head.str(r)
			head.byte1(byte(e.status[i]))
			head.reply(e.replies[i])
		}
	}
	bodyLen := body.Size()
	inline := bodyLen <= inlineBody
	size := len(head.b) + binary.MaxVarintLen64
	if inline {
		size += int(bodyLen)
	}
	if int64(size)+bodyLen > maxRecord {
		return record{}, fmt.Errorf("message of %d bytes is too large for the journal", bodyLen)
	}
	enc := newEncoder(recMessage, size)
	enc.bytes(head.b)
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

// headSize estimates the encoded state of m.
func headSize(m *msgState) int {
	size := 64
	for _, p := range m.parts {
		size += len(p.sender) + len(p.prefix) + 4
	}
	for _, e := range m.envs {
		size += len(e.domain) + 24
		for i, r := range e.rcpts {
			rp := e.replies[i]
			size += len(r) + 8 + len(rp.Enhanced) + len(rp.Text) + len(rp.Host)
		}
	}
	return size
}

// decodeMessage parses the state part of a message record (without the
// body, which replay locates itself).
func decodeMessage(head []byte) (*msgState, error) {
	d := &decoder{b: head}
	m := &msgState{id: d.str(), received: d.time()}
	flags := d.byte1()
	m.warned, m.aside = flags&flagWarned != 0, flags&flagAside != 0
	nparts := d.count()
	for i := 0; i < nparts && d.err == nil; i++ {
		sender := d.str()
		prefix, _ := d.bytesRef()
		m.parts = append(m.parts, partState{sender: sender, prefix: append([]byte(nil), prefix...)})
	}
	nenvs := d.count()
	for i := 0; i < nenvs && d.err == nil; i++ {
		e := &envState{msg: m, index: i, heapIdx: -1}
		e.part = int(d.uvarint())
		e.domain = d.str()
		e.attempts = int(d.uvarint())
		e.next = d.time()
		e.strikes = int(d.uvarint())
		n := d.count()
		e.rcpts = make([]string, 0, n)
		e.status = make([]rcptStatus, 0, n)
		e.replies = make([]envelope.Reply, 0, n)
		for j := 0; j < n && d.err == nil; j++ {
			e.rcpts = append(e.rcpts, d.str())
			st := rcptStatus(d.byte1())
			if st > rcptFailed {
				d.fail()
			}
			e.status = append(e.status, st)
			e.replies = append(e.replies, d.reply())
		}
		if e.part >= len(m.parts) {
			d.fail()
		}
		m.envs = append(m.envs, e)
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail()
	}
	if d.err != nil {
		return nil, fmt.Errorf("message record: %w", d.err)
	}
	return m, nil
}

// attemptKind says what a status record reports.
type attemptKind byte

const (
	attemptDone     attemptKind = 0 // the outcome of an attempt
	attemptStarted  attemptKind = 1 // an attempt begins (recorded before delivery)
	attemptPanicked attemptKind = 2 // the attempt panicked; every recipient stays as it was
)

// statusUpdate is one event of one attempt of one envelope.
type statusUpdate struct {
	id       string
	env      int
	kind     attemptKind
	attempts int
	next     time.Time
	rcpts    []rcptUpdate
}

type rcptUpdate struct {
	index  int
	status rcptStatus
	reply  envelope.Reply
}

func encodeStatus(u *statusUpdate) []byte {
	size := 40
	for _, r := range u.rcpts {
		size += 12 + len(r.reply.Enhanced) + len(r.reply.Text) + len(r.reply.Host)
	}
	enc := newEncoder(recStatus, size)
	enc.str(u.id)
	enc.uvarint(uint64(u.env))
	enc.byte1(byte(u.kind))
	enc.uvarint(uint64(u.attempts))
	enc.time(u.next)
	enc.uvarint(uint64(len(u.rcpts)))
	for _, r := range u.rcpts {
		enc.uvarint(uint64(r.index))
		enc.byte1(byte(r.status))
		enc.reply(r.reply)
	}
	return enc.frame()
}

func decodeStatus(payload []byte) (*statusUpdate, error) {
	d := &decoder{b: payload}
	u := &statusUpdate{id: d.str(), env: int(d.uvarint()), kind: attemptKind(d.byte1()), attempts: int(d.uvarint()), next: d.time()}
	if u.kind > attemptPanicked {
		d.fail()
	}
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		r := rcptUpdate{index: int(d.uvarint()), status: rcptStatus(d.byte1()), reply: d.reply()}
		if r.status > rcptFailed {
			d.fail()
		}
		u.rcpts = append(u.rcpts, r)
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail()
	}
	if d.err != nil {
		return nil, fmt.Errorf("status record: %w", d.err)
	}
	return u, nil
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
	if d.err == nil && d.off != len(d.b) {
		d.fail()
	}
	if d.err != nil {
		return "", fmt.Errorf("id record: %w", d.err)
	}
	return id, nil
}
