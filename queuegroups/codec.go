package queuegroups

import (
	"encoding/binary"
	"fmt"
	"slices"

	"fanmail/envelope"
)

// The records of one message share, in journal order: its head (the
// parts, then the body), one record per envelope (its recipients), and a
// commit that makes it deliverable; then a status record per attempt
// event. Marks (delete, warned, moved aside) carry only the ID.

// inlineBody is the largest body copied into a head record's buffer; a
// bigger one is streamed into the journal by its writer.
const inlineBody = 64 << 10

// Head record flags. A reader ignores the bits it does not know, so a
// new flag needs no new format version as long as ignoring it is safe:
// delivery without flagSMTPUTF8 is what fanmail did before it existed.
const (
	flagWarned byte = 1 << iota
	flagAside
	flagSMTPUTF8 // received with MAIL's SMTPUTF8 parameter (RFC 6531)
)

// encodeHead writes a message's head record: ID, arrival, flags, parts,
// then the body. The payload is uvarint(length of what precedes the
// body), that part, and the body, so replay can read the head without
// holding the body. A body larger than inlineBody is left for the
// journal writer to copy.
func encodeHead(m *msgState, body envelope.Body) (record, error) {
	size := 64
	for _, p := range m.parts {
		size += len(p.sender) + len(p.prefix) + len(p.insert) + 24
	}
	head := &encoder{b: make([]byte, 0, size)}
	head.str(m.id)
	head.time(m.received)
	var flags byte
	if m.warned {
		flags |= flagWarned
	}
	if m.aside {
		flags |= flagAside
	}
	if m.utf8 {
		flags |= flagSMTPUTF8
	}
	head.byte1(flags)
	head.uvarint(uint64(len(m.parts)))
	laid, personal := false, false
	for _, p := range m.parts {
		head.str(p.sender)
		head.bytes(p.prefix)
		laid = laid || p.hasLayout()
		personal = personal || p.isPersonal()
	}
	if laid || personal {
		// Only a head with a laid-out or personalized part has layouts,
		// after the parts, and only one with a personalized part has
		// their Personal after those: a journal of lists that do not
		// personalize is written as before.
		for _, p := range m.parts {
			head.layout(p)
		}
	}
	if personal {
		for _, p := range m.parts {
			head.personal(p.personal)
		}
	}
	bodyLen := body.Size()
	inline := bodyLen <= inlineBody
	size = len(head.b) + binary.MaxVarintLen64
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

// decodeHead parses a head record's payload without the body, which
// replay locates itself.
func decodeHead(payload []byte) (*msgState, error) {
	d := &decoder{b: payload}
	m := newMsgState(d.str(), d.time(), nil)
	flags := d.byte1()
	m.warned, m.aside, m.utf8 = flags&flagWarned != 0, flags&flagAside != 0, flags&flagSMTPUTF8 != 0
	nparts := d.count()
	for i := 0; i < nparts && d.err == nil; i++ {
		sender := d.str()
		prefix, _ := d.bytesRef()
		m.parts = append(m.parts, partState{sender: sender, prefix: append([]byte(nil), prefix...)})
	}
	if d.err == nil && d.off != len(d.b) {
		laid, personal := false, false
		for i := range m.parts {
			d.layout(&m.parts[i])
			laid = laid || m.parts[i].hasLayout()
		}
		if d.err == nil && d.off != len(d.b) {
			for i := range m.parts {
				m.parts[i].personal = d.personal()
				personal = personal || m.parts[i].isPersonal()
			}
			if !personal {
				d.fail() // written only when a part is personalized
			}
		}
		if !laid && !personal {
			d.fail() // layouts are written only when a part has one
		}
	}
	if d.err == nil && (len(m.parts) > 1<<16 || d.off != len(d.b)) {
		d.fail()
	}
	if d.err != nil {
		return nil, fmt.Errorf("message record: %w", d.err)
	}
	m.failed = make([]int, len(m.parts))
	return m, nil
}

// encodePart writes a part declared after the head was written.
func encodePart(id string, index int, p partState) []byte {
	enc := newEncoder(recPart, len(id)+len(p.sender)+len(p.prefix)+len(p.insert)+36)
	enc.str(id)
	enc.uvarint(uint64(index))
	enc.str(p.sender)
	enc.bytes(p.prefix)
	if p.hasLayout() || p.isPersonal() {
		enc.layout(p)
	}
	if p.isPersonal() {
		enc.personal(p.personal)
	}
	return enc.frame()
}

func decodePart(payload []byte) (id string, index int, p partState, err error) {
	d := &decoder{b: payload}
	id = d.str()
	i := d.uvarint()
	p.sender = d.str()
	prefix, _ := d.bytesRef()
	p.prefix = append([]byte(nil), prefix...)
	if d.err == nil && d.off != len(d.b) {
		d.layout(&p)
		if d.err == nil && d.off != len(d.b) {
			if p.personal = d.personal(); !p.isPersonal() {
				d.fail() // written only for a personalized part
			}
		}
		if !p.hasLayout() && !p.isPersonal() {
			d.fail() // a layout is written only when the part has one
		}
	}
	if d.err == nil && (i > 1<<16 || d.off != len(d.b)) {
		d.fail()
	}
	if d.err != nil {
		return "", 0, p, fmt.Errorf("part record: %w", d.err)
	}
	return id, int(i), p, nil
}

// layout writes a part's layout (Part.Skip, Insert, InsertAt). Heads
// and part records carry it after everything else, and only when a part
// has one: a record without it reads as a part that is prefix + body.
func (e *encoder) layout(p partState) {
	e.uvarint(uint64(p.skip))
	var has byte
	if p.insert != nil {
		has = 1
	}
	e.byte1(has)
	e.bytes(p.insert)
	e.uvarint(uint64(p.insertAt))
}

// layout reads what encoder.layout wrote, in its one form: a part
// without an insert has no insert bytes and no offset.
func (d *decoder) layout(p *partState) {
	p.skip = int64(d.uvarint())
	has := d.byte1()
	insert, _ := d.bytesRef()
	p.insertAt = int64(d.uvarint())
	switch {
	case has == 1:
		p.insert = append([]byte{}, insert...)
	case has != 0 || len(insert) != 0 || p.insertAt != 0:
		d.fail()
	}
	if p.skip < 0 || p.insertAt < 0 {
		d.fail()
	}
}

// personal writes a part's Personal: its mode and template. Heads and
// part records carry it after the layouts, only for personalized parts.
func (e *encoder) personal(p envelope.Personal) {
	e.byte1(byte(p.Mode))
	e.bytes(p.Template)
}

func (d *decoder) personal() envelope.Personal {
	mode := envelope.Personalize(d.byte1())
	tmpl, _ := d.bytesRef()
	if mode > envelope.PersonalizeFull || (mode == envelope.PersonalizeOff && len(tmpl) > 0) {
		d.fail()
	}
	return envelope.Personal{Mode: mode, Template: append([]byte(nil), tmpl...)}
}

// envRecord is one envelope as its record holds it.
type envRecord struct {
	id     string
	index  int
	part   int
	domain string
	rcpts  []string
}

func encodeEnvelope(id string, index, part int, domain string, rcpts []string) []byte {
	size := len(id) + len(domain) + 16
	for _, r := range rcpts {
		size += len(r) + 1
	}
	enc := newEncoder(recEnvelope, size)
	enc.str(id)
	enc.uvarint(uint64(index))
	enc.uvarint(uint64(part))
	enc.str(domain)
	enc.uvarint(uint64(len(rcpts)))
	for _, r := range rcpts {
		enc.str(r)
	}
	return enc.frame()
}

func decodeEnvelope(payload []byte) (*envRecord, error) {
	d := &decoder{b: payload}
	r := &envRecord{id: d.str(), index: int(d.uvarint()), part: int(d.uvarint()), domain: d.str()}
	n := d.count()
	r.rcpts = make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		r.rcpts = append(r.rcpts, d.str())
	}
	if d.err == nil && (r.index > 1<<31 || r.part > 1<<16 || d.off != len(d.b)) {
		d.fail()
	}
	if d.err != nil {
		return nil, fmt.Errorf("envelope record: %w", d.err)
	}
	return r, nil
}

// encodeCommit writes the record that makes a share deliverable once
// its envelopes are on disk: how many there are.
func encodeCommit(id string, envs int) []byte {
	enc := newEncoder(recCommit, len(id)+8)
	enc.str(id)
	enc.uvarint(uint64(envs))
	return enc.frame()
}

func decodeCommit(payload []byte) (id string, envs int, err error) {
	d := &decoder{b: payload}
	id = d.str()
	n := d.uvarint()
	if d.err == nil && (n > 1<<31 || d.off != len(d.b)) {
		d.fail()
	}
	if d.err != nil {
		return "", 0, fmt.Errorf("commit record: %w", d.err)
	}
	return id, int(n), nil
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
	u := &statusUpdate{id: d.str()}
	env, kind, attempts := d.uvarint(), attemptKind(d.byte1()), d.uvarint()
	u.next = d.time()
	if kind > attemptProgress || env > 1<<31 || attempts > 1<<31 {
		d.fail()
	}
	u.env, u.kind, u.attempts = int(env), kind, int(attempts)
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		idx := d.uvarint()
		r := rcptUpdate{index: int(idx), status: rcptStatus(d.byte1()), reply: d.reply()}
		if r.status > rcptFailed || idx > 1<<31 {
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

// encodeReported writes the record that a DSN reported refs.
func encodeReported(id string, refs []rcptRef) []byte {
	enc := newEncoder(recReported, len(id)+4+len(refs)*4)
	enc.str(id)
	enc.uvarint(uint64(len(refs)))
	for _, r := range refs {
		enc.uvarint(uint64(r.env))
		enc.uvarint(uint64(r.idx))
	}
	return enc.frame()
}

func decodeReported(payload []byte) (string, []rcptRef, error) {
	d := &decoder{b: payload}
	id := d.str()
	n := d.count() // each ref takes at least two bytes
	refs := make([]rcptRef, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		env, idx := d.uvarint(), d.uvarint()
		if env > 1<<31 || idx > 1<<31 {
			d.fail()
		}
		refs = append(refs, rcptRef{int(env), int(idx)})
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail()
	}
	if d.err != nil {
		return "", nil, fmt.Errorf("reported record: %w", d.err)
	}
	return id, refs, nil
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

// recordID reads the message ID every record but the segment header
// starts with, without decoding the rest.
func recordID(typ byte, payload []byte) string {
	if typ == recHeader {
		return ""
	}
	d := &decoder{b: payload}
	return d.str()
}
