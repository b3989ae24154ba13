package queuegroups

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
	msgs map[string]*msgState
	lock *os.File // flock held while the server owns the directory
}

// openDir locks path (unless readOnly), replays its journal and returns
// it with every replayed message in msgs.
func openDir(path string, segmentSize int64, log *slog.Logger, readOnly bool) (*dir, error) {
	d := &dir{path: path, log: log, msgs: map[string]*msgState{}}
	if err := os.MkdirAll(path, 0o750); err != nil {
		return nil, fmt.Errorf("create queue directory: %w", err)
	}
	if !readOnly {
		lock, err := lockDir(path)
		if err != nil {
			return nil, err
		}
		d.lock = lock
		removeStaleBodies(path)
	}
	j, err := openJournal(path, segmentSize, log, readOnly, d.replayRecord)
	if err != nil {
		d.unlock()
		return nil, err
	}
	d.j = j
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

// replayRecord rebuilds state from one journal record.
func (d *dir) replayRecord(seg *segment, off int64, typ byte, payload []byte) error {
	switch typ {
	case recMessage, recMessageLayout:
		m, bodyOff, bodyLen, err := decodeMessage(typ, payload)
		if err != nil {
			return err
		}
		m.dir = d
		m.seg = seg
		m.bodyOff = off + frameHeader + 1 + int64(bodyOff)
		m.bodyLen = int64(bodyLen)
		// A later full record (a relocation) replaces the earlier one.
		d.msgs[m.id] = m
	case recStatus:
		u, err := decodeStatus(payload)
		if err != nil {
			return err
		}
		m := d.msgs[u.id]
		if m == nil || u.env >= len(m.envs) {
			return nil // the message finished and its record was collected
		}
		applyUpdate(m.envs[u.env], u)
	case recDelete:
		id, err := decodeID(payload)
		if err != nil {
			return err
		}
		delete(d.msgs, id)
	case recWarned:
		id, err := decodeID(payload)
		if err != nil {
			return err
		}
		if m := d.msgs[id]; m != nil {
			m.warned = true
		}
	default:
		return fmt.Errorf("unknown record type %d", typ)
	}
	return nil
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
		if m.seg != oldest || m.hasInflight() {
			continue
		}
		if err := d.relocate(m); err != nil {
			d.log.Warn("cannot relocate message from old journal segment", "qid", m.id, "dir", d.path, "err", err)
			return
		}
	}
	d.j.dropOldest(func(seg *segment) bool { return seg.live == 0 })
}

// relocate writes m's full current state at the journal head, durably,
// before the old segment may go. It runs with g.mu held and m idle, so
// no status record of m can be written before the new full record lands
// and then be lost by replay.
func (d *dir) relocate(m *msgState) error {
	rec, err := encodeMessage(m, io.NewSectionReader(m.seg.file, m.bodyOff, m.bodyLen))
	if err != nil {
		return err
	}
	seg, offs, err := d.j.append(true, false, rec)
	if err != nil {
		return err
	}
	m.seg.live--
	m.seg = seg
	m.bodyOff = offs[0] + rec.size() - m.bodyLen
	seg.live++
	return nil
}

// retire drops a message whose every recipient is final, and the journal
// segments nothing needs any more. Called with the group's mutex held.
func (d *dir) retire(m *msgState) {
	delete(d.msgs, m.id)
	m.seg.live--
	d.collect()
}
