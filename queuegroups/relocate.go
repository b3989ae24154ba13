package queuegroups

import (
	"fmt"
	"io"
)

// relocateBatch is how many bytes of copied records go to the journal
// in one append while a message is relocated.
const relocateBatch = 256 << 10

// relocate writes m again at the journal head, so the old segment that
// holds its head can go: a new head with the body, then a copy of each
// of its records (envelopes, commit, attempts, marks) in order, the
// last append synced. Replay keeps the old state until the copy's
// commit record, so a crash in the middle loses nothing. It runs with
// g.mu held and m idle, with no fresh envelope left, so no record of m
// is written meanwhile and no slot is in use.
func (d *dir) relocate(m *msgState) error {
	head, err := encodeHead(m, io.NewSectionReader(m.seg.file, m.bodyOff, m.bodyLen))
	if err != nil {
		return err
	}
	var (
		batch   = []record{head}
		size    = head.size()
		envIdx  []int // for each record of batch: the envelope index, or -1
		newHead *segment
		headOff int64
		segs    []*segment
		slotSeg = make([]uint32, len(m.slots))
		slotOff = make([]int64, len(m.slots))
	)
	envIdx = append(envIdx, -1)
	flush := func(sync bool) error {
		seg, offs, err := d.j.append(sync, false, batch...)
		if err != nil {
			return err
		}
		if newHead == nil {
			newHead, headOff = seg, offs[0]
		}
		if len(segs) == 0 || segs[len(segs)-1] != seg {
			segs = append(segs, seg)
		}
		for k, i := range envIdx {
			if i >= 0 {
				slotSeg[i], slotOff[i] = uint32(len(segs)-1), offs[k]
			}
		}
		batch, envIdx, size = batch[:0], envIdx[:0], 0
		return nil
	}
	// The scan stops where the journal ended before the copy began, so
	// it never reads the copies.
	err = m.scan(snapshot(d.j.segmentsFrom(m.seg)), func(typ byte, payload []byte) error {
		i := -1
		if typ == recPart {
			return nil // the new head has every part
		}
		if typ == recEnvelope {
			r, err := decodeEnvelope(payload)
			if err != nil {
				return err
			}
			if r.index >= len(m.slots) {
				return fmt.Errorf("envelope %d of %d", r.index, len(m.slots))
			}
			i = r.index
		}
		rec := reframe(typ, payload)
		batch, envIdx, size = append(batch, complete(rec)), append(envIdx, i), size+int64(len(rec))
		if size >= relocateBatch {
			return flush(false)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copy the records of %s: %w", m.id, err)
	}
	if err := flush(true); err != nil {
		return err
	}
	m.seg.live--
	m.seg = newHead
	m.bodyOff = headOff + head.size() - m.bodyLen
	newHead.live++
	m.segs = segs
	for i := range m.slots {
		m.slots[i].seg, m.slots[i].off = slotSeg[i], slotOff[i]
	}
	return nil
}

// reframe makes a record of typ from a payload read back.
func reframe(typ byte, payload []byte) []byte {
	enc := newEncoder(typ, len(payload))
	enc.b = append(enc.b, payload...)
	return enc.frame()
}
