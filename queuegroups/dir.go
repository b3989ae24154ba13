package queuegroups

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// dir is one queue directory of a group: its journal (with its own
// writer and group commit, so directories on different disks sync in
// parallel) and the messages whose state lives in it. msgs and the
// segments' live counts are guarded by the owning group's mutex.
type dir struct {
	path string
	log  *slog.Logger
	j    *journal
	msgs map[string]*msgState // committed shares
	lock *os.File             // flock held while the server owns the directory

	// During replay and recovery: shares whose commit record has not been
	// read (a post being written when the server stopped, or a
	// relocation's copy), and IDs unreadable bytes may have held.
	pending  map[string]*msgState
	suspects map[string]bool
}

// openDir locks path (unless readOnly), replays its journal and returns
// it with every replayed message in msgs.
func openDir(path string, segmentSize int64, log *slog.Logger, readOnly bool) (*dir, error) {
	d := &dir{path: path, log: log, msgs: map[string]*msgState{}, pending: map[string]*msgState{}, suspects: map[string]bool{}}
	if !readOnly {
		if err := os.MkdirAll(path, 0o750); err != nil {
			return nil, fmt.Errorf("create queue directory: %w", err)
		}
		lock, err := lockDir(path)
		if err != nil {
			return nil, err
		}
		d.lock = lock
		removeStaleBodies(path)
	}
	j, err := openJournal(path, segmentSize, log, readOnly, d)
	if err != nil {
		d.unlock()
		return nil, err
	}
	d.j = j
	d.reportDamage()
	d.suspects = nil
	return d, nil
}

// lockDir takes the directory's lock file so two servers never share a
// spool: both would append to the same journal.
func lockDir(path string) (*os.File, error) {
	name := filepath.Join(path, "lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open queue lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("queue directory %s is in use by another fanmail server (lock %s: %v)", path, name, err)
	}
	return f, nil
}

func (d *dir) unlock() {
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
}

func (d *dir) close() {
	if d.j != nil {
		d.j.close()
	}
	d.unlock()
}

// record rebuilds state from one journal record (replayer). A head
// starts a share that counts only once its commit record follows (until
// then it is in pending); a head for a message already committed here
// is a relocation, which replaces the old state at its commit.
func (d *dir) record(seg *segment, off int64, typ byte, payload []byte, bodyOff, bodyLen int64) error {
	switch typ {
	case recHeader:
		_, err := decodeHeader(payload)
		return err
	case recMessage:
		m, err := decodeHead(payload)
		if err != nil {
			return err
		}
		for _, p := range m.parts {
			if !p.fits(bodyLen) {
				return fmt.Errorf("message record %s: a part's layout does not fit its body of %d bytes: %w", m.id, bodyLen, errCorrupt)
			}
		}
		m.dir, m.seg = d, seg
		m.bodyOff, m.bodyLen = bodyOff, bodyLen
		d.pending[m.id] = m
	case recPart:
		id, i, part, err := decodePart(payload)
		if err != nil {
			return err
		}
		m := d.pending[id]
		switch {
		case m == nil:
			d.orphan(seg, id)
		case !part.fits(m.bodyLen):
			return fmt.Errorf("part %d of %s: its layout does not fit the body of %d bytes: %w", i, id, m.bodyLen, errCorrupt)
		case i == len(m.parts):
			m.parts = append(m.parts, part)
			m.failed = append(m.failed, 0)
		case i > len(m.parts):
			return fmt.Errorf("part %d of %s out of order", i, id)
		}
	case recEnvelope:
		r, err := decodeEnvelope(payload)
		if err != nil {
			return err
		}
		m := d.pending[r.id]
		if m == nil {
			d.orphan(seg, r.id)
			return nil
		}
		if r.index != len(m.slots) || r.part >= len(m.parts) {
			return fmt.Errorf("envelope %d (part %d) of %s out of order", r.index, r.part, r.id)
		}
		m.addEnvelope(seg, off, r.part, r.domain, len(r.rcpts))
	case recCommit:
		id, n, err := decodeCommit(payload)
		if err != nil {
			return err
		}
		m := d.pending[id]
		if m == nil {
			d.orphan(seg, id)
			return nil
		}
		if n != len(m.slots) {
			return fmt.Errorf("commit of %s names %d envelopes, %d written", id, n, len(m.slots))
		}
		delete(d.pending, id)
		m.committed = true
		d.msgs[id] = m
	case recStatus:
		u, err := decodeStatus(payload)
		if err != nil {
			return err
		}
		m := d.current(u.id)
		if m == nil {
			d.orphan(seg, u.id)
			return nil
		}
		m.apply(u)
	case recReported:
		id, refs, err := decodeReported(payload)
		if err != nil {
			return err
		}
		if m := d.current(id); m != nil {
			m.markReported(refs)
		} else {
			d.orphan(seg, id)
		}
	case recDelete, recWarned, recAside:
		id, err := decodeID(payload)
		if err != nil {
			return err
		}
		switch m := d.current(id); {
		case typ == recDelete:
			delete(d.msgs, id)
			delete(d.pending, id)
			delete(d.suspects, id)
		case m == nil:
		case typ == recWarned:
			m.warned = true
		case typ == recAside:
			m.aside = true
		}
	default:
		return fmt.Errorf("unknown record type %d", typ)
	}
	return nil
}

// current is the state records of id apply to during replay: the share
// being written (a relocation's copy) if there is one, else the
// committed share.
func (d *dir) current(id string) *msgState {
	if m := d.pending[id]; m != nil {
		return m
	}
	return d.msgs[id]
}

// orphan notes a record whose message is unknown: it finished and its
// head was collected, or its head was in bytes replay could not read.
func (d *dir) orphan(seg *segment, id string) {
	if seg.damaged {
		d.suspects[id] = true
	}
}

// damaged notes an unreadable stretch of seg (replayer): status records
// after it whose message is unknown name messages it may have held.
func (d *dir) damaged(seg *segment, _, _ int64, ids []string) {
	seg.damaged = true
	for _, id := range ids {
		d.suspects[id] = true
	}
}

// reportDamage logs, after replay, the messages whose records may have
// been in unreadable bytes: IDs read from those bytes, and IDs of status
// records after them whose message record replay never found.
func (d *dir) reportDamage() {
	var lost []string
	for id := range d.suspects {
		if d.msgs[id] == nil {
			lost = append(lost, id)
		}
	}
	if len(lost) == 0 {
		return
	}
	slices.Sort(lost)
	d.log.Error("journal damage: these messages may have lost recipients; their bytes are in the quarantine files",
		"dir", d.path, "qids", strings.Join(lost, ","))
}

// collect drops journal segments that no pending message needs and, when
// old segments are pinned by a few long-lived messages, re-writes those
// messages at the head so the segments can go. Called with g.mu held.
func (d *dir) collect() {
	d.j.dropOldest(func(seg *segment) bool { return seg.live == 0 })
	segs := d.j.segments()
	if len(segs) <= 4 {
		return
	}
	oldest := segs[0]
	for _, m := range d.msgs {
		if m.seg != oldest || m.inflight > 0 || m.fresh > 0 {
			continue
		}
		if err := d.relocate(m); err != nil {
			d.log.Warn("cannot relocate message from old journal segment", "qid", m.id, "dir", d.path, "err", err)
			return
		}
	}
	d.j.dropOldest(func(seg *segment) bool { return seg.live == 0 })
}

// retire drops a message whose every recipient is final, and the journal
// segments nothing needs any more. Called with the group's mutex held.
func (d *dir) retire(m *msgState) {
	delete(d.msgs, m.id)
	m.seg.live--
	d.collect()
}
