package queuegroups

import (
	"time"
)

// msgView is what a reader outside the group's lock needs of a share to
// read it back from the journal: taken under the lock, used without it.
type msgView struct {
	m     *msgState
	id    string
	start int64 // where its records begin in segs[0]: after its head
	segs  []segEnd
	parts []partState
	envs  []envView
}

type envView struct {
	seg      *segment
	off      int64
	attempts int
	strikes  int
	next     time.Time
	inflight bool
}

// view snapshots m. Called with the group's mutex held.
func (m *msgState) view() *msgView {
	v := &msgView{m: m, id: m.id, start: m.bodyOff + m.bodyLen, segs: snapshot(m.dir.j.segmentsFrom(m.seg)),
		parts: append([]partState(nil), m.parts...)}
	v.envs = make([]envView, len(m.slots))
	for i, s := range m.slots {
		ev := envView{seg: m.segs[s.seg], off: s.off}
		if e := m.touched[i]; e != nil {
			ev.attempts, ev.strikes, ev.next, ev.inflight = e.attempts, e.strikes, e.next, e.inflight
		}
		v.envs[i] = ev
	}
	return v
}

// states reads m's status records and returns the latest status and
// reply of every recipient that has one, by envelope and recipient
// index, keeping only those keep accepts (nil: all). A recipient with no
// record is pending with no reply.
func (v *msgView) states(keep func(rcptStatus) bool) (map[int]map[int]rcptUpdate, error) {
	out := map[int]map[int]rcptUpdate{}
	err := scanRecords(v.segs, v.start, v.id, func(typ byte, payload []byte) error {
		if typ != recStatus {
			return nil
		}
		u, err := decodeStatus(payload)
		if err != nil || (u.kind != attemptDone && u.kind != attemptProgress) {
			return nil
		}
		for _, r := range u.rcpts {
			if keep != nil && !keep(r.status) {
				if out[u.env] != nil {
					delete(out[u.env], r.index)
				}
				continue
			}
			if out[u.env] == nil {
				out[u.env] = map[int]rcptUpdate{}
			}
			out[u.env][r.index] = r
		}
		return nil
	})
	return out, err
}

// reported reads m's reported records: the recipients a DSN reported.
func (v *msgView) reported() (map[rcptRef]bool, error) {
	out := map[rcptRef]bool{}
	err := scanRecords(v.segs, v.start, v.id, func(typ byte, payload []byte) error {
		if typ != recReported {
			return nil
		}
		_, refs, err := decodeReported(payload)
		if err != nil {
			return nil
		}
		for _, r := range refs {
			out[r] = true
		}
		return nil
	})
	return out, err
}
