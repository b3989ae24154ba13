package queuegroups

import (
	"bytes"
	"cmp"
	"io"
	"slices"
	"time"

	"fanmail/dsn"
	"fanmail/envelope"
)

// msgState is the live state of one message's share in one queue
// directory. It is compact whatever the list's size: the recipients
// stay in the journal's envelope records, read back when an envelope is
// taken, and the replies stay in its status records, read back for a
// DSN or a listing (scan.go). In memory are a slot of a few words per
// envelope, and a full envState only for the envelopes a runner has
// taken that still have pending recipients.
type msgState struct {
	id        string
	received  time.Time
	dir       *dir     // the queue directory holding it
	seg       *segment // segment holding its head record (and the body)
	bodyOff   int64    // body's offset within seg's file
	bodyLen   int64
	parts     []partState
	committed bool // its commit record is written: it may be delivered

	segs    []*segment // segments holding its envelope records; slots index it
	slots   []envSlot  // every envelope, by index
	domains []string   // the destination domains, which slots index
	intern  map[string]uint32

	next    int               // the fresh cursor: the first place in order not yet looked at
	order   []int32           // slot indexes in the order fresh envelopes are taken (freshOrder); nil: index order
	ordered bool              // order is set for this cursor
	fresh   int               // envelopes never taken and not done
	touched map[int]*envState // envelopes taken (or attempted before a restart) and not done

	pendingEnvs  int   // envelopes with pending recipients
	pendingRcpts int   // pending recipients
	total        int   // recipients
	failed       []int // failed recipients per part, for the DSN
	reported     []int // of those, how many a DSN reported (recReported); nil for none
	inflight     int   // envelopes being delivered

	holdUntil time.Time // queue-only mail: fresh envelopes wait until then
	holdIdx   int       // position in the group's hold heap, -1 when not there

	deleted bool // removed by the operator; outcomes in flight are dropped
	warned  bool // the delay warning went out (queuewarn)
	done    bool // every recipient is final; kept until its DSN is sent
	aside   bool // moved aside: attempts panicked or crashed the server too often
	utf8    bool // received with SMTPUTF8 (RFC 6531)

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
	personal envelope.Personal // PersonalizeOff: one copy for the whole envelope
}

// isPersonal reports whether the part's members get their own copies.
func (p *partState) isPersonal() bool { return p.personal.Mode != envelope.PersonalizeOff }

// hasLayout reports whether the part's copy is more than prefix + body.
func (p *partState) hasLayout() bool { return p.skip != 0 || p.insert != nil }

// copySize is the size of the part's copy of a body of bodyLen bytes.
func (p *partState) copySize(bodyLen int64) int64 {
	return int64(len(p.prefix)+len(p.insert)) + bodyLen - p.skip
}

// fits reports whether the layout fits a body of bodyLen bytes.
func (p *partState) fits(bodyLen int64) bool {
	return p.skip >= 0 && p.skip <= bodyLen && (p.insert == nil || (p.insertAt >= p.skip && p.insertAt <= bodyLen))
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

// envSlot is what the scheduler knows of an envelope without reading
// its record: where the record is, its destination and size.
type envSlot struct {
	off    int64  // the envelope record's offset in segs[seg]
	seg    uint32 // index into msgState.segs
	domain uint32 // index into msgState.domains
	n      uint32 // recipients
	part   uint16
	state  slotState
}

type slotState uint8

const (
	slotFresh   slotState = iota // never taken: every recipient pending
	slotTouched                  // has an envState in touched
	slotDone                     // every recipient final
	// slotParked was taken fresh and set aside for a busy destination
	// before anything happened to it: every recipient pending, no
	// envState, and no longer counted in fresh (see park).
	slotParked
)

// envState is an envelope a runner has taken, or one with a recorded
// attempt, while it still has pending recipients.
type envState struct {
	msg      *msgState
	index    int
	domain   string
	pending  []int32 // indexes of the pending recipients; nil means all of them
	attempts int
	next     time.Time // zero: due now
	// strikes counts the attempts in a row that panicked or never ended
	// (the server died during them); open says an attempt was recorded
	// as started and has no outcome yet.
	strikes  int
	open     bool
	inflight bool
	tried    bool         // has had an attempt in this process
	heapIdx  int          // position in the deferred heap, -1 when not there
	progress []rcptUpdate // settled by transactions of the attempt in progress, recorded, not applied yet
}

// newMsgState starts a share's state. Its maps are made when needed: a
// small post (the common case) has few domains and is often delivered
// without ever needing them.
func newMsgState(id string, received time.Time, d *dir) *msgState {
	return &msgState{id: id, received: received, dir: d, holdIdx: -1}
}

// internDomain returns domain's index in m.domains, adding it: by a scan
// while there are few, through the intern map after.
func (m *msgState) internDomain(domain string) uint32 {
	if m.intern == nil {
		for i, d := range m.domains {
			if d == domain {
				return uint32(i)
			}
		}
		if len(m.domains) < 8 {
			m.domains = append(m.domains, domain)
			return uint32(len(m.domains) - 1)
		}
		m.intern = make(map[string]uint32, 16)
		for i, d := range m.domains {
			m.intern[d] = uint32(i)
		}
	}
	di, ok := m.intern[domain]
	if !ok {
		di = uint32(len(m.domains))
		m.domains = append(m.domains, domain)
		m.intern[domain] = di
	}
	return di
}

func (e *envState) pendingCount() int {
	if e.pending == nil {
		return int(e.msg.slots[e.index].n)
	}
	return len(e.pending)
}

// pendingIndexes lists the recipients of e still pending.
func (e *envState) pendingIndexes() []int32 {
	if e.pending != nil {
		return e.pending
	}
	n := int(e.msg.slots[e.index].n)
	idx := make([]int32, n)
	for i := range idx {
		idx[i] = int32(i)
	}
	return idx
}

// addEnvelope appends the slot of envelope record at off in seg.
func (m *msgState) addEnvelope(seg *segment, off int64, part int, domain string, n int) {
	si := len(m.segs) - 1
	if seg != nil && (si < 0 || m.segs[si] != seg) {
		m.segs = append(m.segs, seg)
		si++
	}
	si = max(si, 0) // set by the append that writes it (enqueue)
	di := m.internDomain(domain)
	m.slots = append(m.slots, envSlot{off: off, seg: uint32(si), domain: di, n: uint32(n), part: uint16(part)})
	m.total += n
	m.pendingRcpts += n
	m.pendingEnvs++
	m.fresh++
}

// touch returns envelope i's envState, making one for a fresh envelope,
// or nil if it is done.
func (m *msgState) touch(i int) *envState {
	if e := m.touched[i]; e != nil {
		return e
	}
	s := &m.slots[i]
	switch s.state {
	case slotDone:
		return nil
	case slotFresh:
		m.fresh--
	}
	s.state = slotTouched
	e := &envState{msg: m, index: i, domain: m.domains[s.domain], heapIdx: -1}
	if m.touched == nil {
		m.touched = map[int]*envState{}
	}
	m.touched[i] = e
	return e
}

// park returns e's place among the envelopes set aside for a busy
// destination. An envelope just taken fresh at the cursor, with nothing
// of its own yet, goes back to being its slot alone: a fan-out walks its
// members in domain order, so the cursor sets aside nearly every
// envelope of a domain whose connections are full, and as envStates
// those made the peak memory grow with the list.
func (m *msgState) park(e *envState) parkedEnv {
	if e.pristine() && m.touched[e.index] == e {
		delete(m.touched, e.index)
		m.slots[e.index].state = slotParked
	}
	return parkedEnv{m: m, index: e.index}
}

// pristine reports whether e holds nothing its slot does not: never
// attempted, no recipient settled, not scheduled.
func (e *envState) pristine() bool {
	return e.attempts == 0 && e.strikes == 0 && !e.open && !e.inflight && !e.tried &&
		e.pending == nil && e.progress == nil && e.heapIdx < 0 && e.next.IsZero()
}

// parkedEnv is an envelope set aside for a busy destination: its
// message and index, its envState made again (touch) when it goes back
// to the ready ring.
type parkedEnv struct {
	m     *msgState
	index int
}

func (p parkedEnv) domain() string { return p.m.domains[p.m.slots[p.index].domain] }

// nextFresh takes the next fresh envelope at the cursor, or nil.
func (m *msgState) nextFresh() *envState {
	if !m.ordered {
		m.order, m.ordered = m.freshOrder(), true
	}
	for m.next < len(m.slots) {
		i := m.next
		if m.order != nil {
			i = int(m.order[i])
		}
		m.next++
		if m.slots[i].state == slotFresh {
			return m.touch(i)
		}
	}
	m.order = nil
	return nil
}

// freshOrder is the order of the cursor: the envelopes of the domain
// with the most recipients first, each domain's in the order written;
// nil for index order, when there is one domain. The store reads a
// list in domain order, and a list's big domains are anywhere in that
// order, but each holds many recipients per delivery: taken first, they
// bring the median member's arrival forward (on a long tail of slow
// domains, by seconds), while their connections' limits set aside what
// cannot go yet. It costs 4 bytes per envelope while the cursor walks,
// a few hundred KB for ten million members.
func (m *msgState) freshOrder() []int32 {
	if len(m.domains) < 2 {
		return nil
	}
	order := make([]int32, len(m.slots))
	for i := range order {
		order[i] = int32(i)
	}
	total := make([]int, len(m.domains))
	for _, s := range m.slots {
		total[s.domain] += int(s.n)
	}
	slices.SortStableFunc(order, func(a, b int32) int {
		da, db := m.slots[a].domain, m.slots[b].domain
		return cmp.Or(cmp.Compare(total[db], total[da]), cmp.Compare(da, db))
	})
	return order
}

// apply folds a status record into envelope u.env's state: the start
// of an attempt, its outcome, or a panic.
func (m *msgState) apply(u *statusUpdate) {
	if u.env < 0 || u.env >= len(m.slots) {
		return
	}
	e := m.touch(u.env)
	if e == nil {
		return // done already
	}
	switch u.kind {
	case attemptStarted:
		if e.open {
			e.strikes++ // the attempt before never ended: the server died
		}
		e.open = true
		return
	case attemptProgress:
		m.settle(e, u.rcpts)
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
	if u.kind != attemptDone || len(u.rcpts) == 0 {
		return
	}
	n := int(m.slots[u.env].n)
	var pending []int32
	final := 0
	for _, r := range u.rcpts {
		if r.index >= n {
			continue
		}
		switch r.status {
		case rcptPending:
			pending = append(pending, int32(r.index))
		case rcptFailed:
			m.failed[m.slots[u.env].part]++
			final++
		default:
			final++
		}
	}
	m.pendingRcpts -= final
	if len(pending) > 0 {
		e.pending = pending
		return
	}
	m.finishEnvelope(e)
}

// settle takes the final recipients of rcpts out of e's pending ones,
// for a transaction that settled them while its attempt goes on.
func (m *msgState) settle(e *envState, rcpts []rcptUpdate) {
	n := int(m.slots[e.index].n)
	idx := e.pendingIndexes()
	gone := map[int32]bool{}
	for _, r := range rcpts {
		if r.index >= n || r.status == rcptPending || gone[int32(r.index)] {
			continue
		}
		if !slices.Contains(idx, int32(r.index)) {
			continue // settled before
		}
		gone[int32(r.index)] = true
		m.pendingRcpts--
		if r.status == rcptFailed {
			m.failed[m.slots[e.index].part]++
		}
	}
	if len(gone) == 0 {
		return
	}
	left := make([]int32, 0, len(idx)-len(gone))
	for _, i := range idx {
		if !gone[i] {
			left = append(left, i)
		}
	}
	if len(left) > 0 {
		e.pending = left
		return
	}
	m.finishEnvelope(e)
}

// finishEnvelope marks e done: every recipient is final.
func (m *msgState) finishEnvelope(e *envState) {
	delete(m.touched, e.index)
	m.slots[e.index].state = slotDone
	m.pendingEnvs--
}

// failedFor reports whether m has a failed recipient whose envelope
// sender may get a DSN.
func (m *msgState) failedFor() bool {
	for i, n := range m.failed {
		if n > 0 && dsn.Wanted(m.parts[i].sender) {
			return true
		}
	}
	return false
}

// rcptRef names one recipient of a share: its envelope and its index
// in the envelope.
type rcptRef struct{ env, idx int }

// unreported reports whether m has a failed recipient whose envelope
// sender may get a DSN and that no DSN reported yet.
func (m *msgState) unreported() bool {
	for i, n := range m.failed {
		if n > 0 && dsn.Wanted(m.parts[i].sender) && (i >= len(m.reported) || m.reported[i] < n) {
			return true
		}
	}
	return false
}

// markReported counts refs as reported, for unreported.
func (m *msgState) markReported(refs []rcptRef) {
	if m.reported == nil {
		m.reported = make([]int, len(m.parts))
	}
	for len(m.reported) < len(m.parts) {
		m.reported = append(m.reported, 0)
	}
	for _, r := range refs {
		if r.env >= 0 && r.env < len(m.slots) {
			m.reported[m.slots[r.env].part]++
		}
	}
}

// attemptKind says what a status record reports.
type attemptKind byte

const (
	attemptDone     attemptKind = 0 // the outcome of an attempt
	attemptStarted  attemptKind = 1 // an attempt begins (recorded before delivery)
	attemptPanicked attemptKind = 2 // the attempt panicked; every recipient stays as it was
	attemptProgress attemptKind = 3 // recipients one transaction of an attempt in progress settled
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
