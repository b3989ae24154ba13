package queuegroups

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Stats is a snapshot of the queue's contents over all groups.
type Stats struct {
	Messages   int // message shares with pending recipients (one per group a post reaches)
	Envelopes  int // envelopes with pending recipients
	Recipients int // pending recipients, not counting those moved aside
	MovedAside int // message shares moved aside
	Inflight   int // envelopes being delivered now
	Deferred   int // envelopes waiting for a retry
	Syncs      int64
}

// Stats returns totals over every group.
func (q *Queue) Stats() Stats {
	var s Stats
	for _, g := range q.order {
		g.mu.Lock()
		s.Inflight += g.inflight
		s.Deferred += g.deferred.Len()
		for _, h := range g.held {
			s.Deferred += h.it.fresh // queue-only mail waiting for the interval
		}
		for _, d := range g.dirs {
			s.Messages += len(d.msgs)
			s.Syncs += d.j.syncs.Load()
			for _, m := range d.msgs {
				if m.aside {
					s.MovedAside++
					continue
				}
				s.Envelopes += m.pendingEnvs
				s.Recipients += m.pendingRcpts
			}
		}
		g.mu.Unlock()
	}
	return s
}

// Expired counts, by group, the recipients the queue has given up on
// since it opened because their queue lifetime (queuereturn) ran out:
// failures delivery never reported as such, since every attempt of
// theirs was deferred.
func (q *Queue) Expired() map[string]int64 {
	out := make(map[string]int64, len(q.order))
	for _, g := range q.order {
		out[g.cfg.Name] = g.expired.Load()
	}
	return out
}

// DirSummary is one queue directory's line in a queue listing (mailq).
type DirSummary struct {
	Group      string         `json:"group"`
	Dir        string         `json:"dir"`
	Messages   int            `json:"messages"`
	Envelopes  int            `json:"envelopes"`
	Recipients int            `json:"recipients"`
	Inflight   int            `json:"inflight"`
	Deferred   int            `json:"deferred"`
	MovedAside int            `json:"moved_aside"` // messages, counted in Messages too
	Oldest     time.Time      `json:"oldest,omitzero"`
	TopDomains []DomainCount  `json:"top_domains,omitempty"`
	List       []MessageBrief `json:"messages_list,omitempty"`
}

// DomainCount is pending recipients at one destination domain.
type DomainCount struct {
	Domain     string `json:"domain"`
	Recipients int    `json:"recipients"`
}

// MessageBrief is one queued message in a listing.
type MessageBrief struct {
	ID         string    `json:"id"`
	Received   time.Time `json:"received"`
	Size       int64     `json:"size"`
	Recipients int       `json:"recipients"` // pending
	MovedAside bool      `json:"moved_aside,omitempty"`
}

// Summary lists every group directory: counts, the oldest pending
// message, the top destination domains and, up to limit per directory,
// the messages themselves (oldest first).
func (q *Queue) Summary(topDomains, limit int) []DirSummary {
	var out []DirSummary
	for _, g := range q.order {
		g.mu.Lock()
		for _, d := range g.dirs {
			s := DirSummary{Group: g.cfg.Name, Dir: d.path}
			domains := map[string]int{}
			for _, m := range d.msgs {
				s.Envelopes += m.pendingEnvs
				s.Inflight += m.inflight
				for _, e := range m.touched {
					if e.heapIdx >= 0 {
						s.Deferred++
					}
				}
				if m.holdIdx >= 0 {
					s.Deferred += m.fresh
				}
				for i, slot := range m.slots {
					switch slot.state {
					case slotFresh, slotParked:
						domains[m.domains[slot.domain]] += int(slot.n)
					case slotTouched:
						domains[m.domains[slot.domain]] += m.touched[i].pendingCount()
					}
				}
				s.Messages++
				s.Recipients += m.pendingRcpts
				if m.aside {
					s.MovedAside++
				}
				if s.Oldest.IsZero() || m.received.Before(s.Oldest) {
					s.Oldest = m.received
				}
				s.List = append(s.List, MessageBrief{ID: m.id, Received: m.received, Size: m.bodyLen, Recipients: m.pendingRcpts, MovedAside: m.aside})
			}
			for dom, n := range domains {
				s.TopDomains = append(s.TopDomains, DomainCount{dom, n})
			}
			slices.SortFunc(s.TopDomains, func(a, b DomainCount) int {
				return cmp.Or(cmp.Compare(b.Recipients, a.Recipients), cmp.Compare(a.Domain, b.Domain))
			})
			s.TopDomains = s.TopDomains[:min(len(s.TopDomains), topDomains)]
			slices.SortFunc(s.List, func(a, b MessageBrief) int {
				return cmp.Or(a.Received.Compare(b.Received), cmp.Compare(a.ID, b.ID))
			})
			s.List = s.List[:min(len(s.List), limit)]
			out = append(out, s)
		}
		g.mu.Unlock()
	}
	return out
}

// MessageDetail is everything the queue knows of one message.
type MessageDetail struct {
	ID       string    `json:"id"`
	Received time.Time `json:"received"`
	Size     int64     `json:"size"`
	// MovedAside names the groups whose share of the message was moved
	// aside: its delivery panicked or crashed the server too often, and
	// it is kept, never retried, until deleted.
	MovedAside []string         `json:"moved_aside,omitempty"`
	Envelopes  []EnvelopeDetail `json:"envelopes"`
}

// EnvelopeDetail is one envelope of a message, with each recipient.
type EnvelopeDetail struct {
	Group      string            `json:"group"`
	Dir        string            `json:"dir"`
	Sender     string            `json:"sender"`
	Domain     string            `json:"domain"`
	Attempts   int               `json:"attempts"`
	Strikes    int               `json:"strikes,omitempty"` // attempts in a row that panicked or died with the server
	Next       time.Time         `json:"next,omitzero"`
	Inflight   bool              `json:"inflight,omitempty"`
	Recipients []RecipientDetail `json:"recipients"`
}

// RecipientDetail is one recipient's state and last reply.
type RecipientDetail struct {
	Address string `json:"address"`
	Status  string `json:"status"` // pending, delivered, failed
	Reply   string `json:"reply,omitempty"`
	Host    string `json:"host,omitempty"` // the MX that gave the reply
}

// Has reports whether the queue holds message id in any group: pending,
// or finished and still owing its DSN.
func (q *Queue) Has(id string) bool {
	for _, g := range q.order {
		g.mu.Lock()
		_, m := g.share(id)
		g.mu.Unlock()
		if m != nil {
			return true
		}
	}
	return false
}

// ErrNoMessage means no queued message has the ID.
var ErrNoMessage = errors.New("no such message in the queue")

// Show returns message id as every group holds it: the envelopes and
// replies are read back from the journal.
func (q *Queue) Show(id string) (MessageDetail, error) {
	md := MessageDetail{ID: id}
	found := false
	for _, g := range q.order {
		g.mu.Lock()
		d, m := g.share(id)
		var v *msgView
		if m != nil {
			found = true
			md.Received, md.Size = m.received, m.bodyLen
			if m.aside {
				md.MovedAside = append(md.MovedAside, g.cfg.Name)
			}
			v = m.view()
		}
		g.mu.Unlock()
		if v == nil {
			continue
		}
		states, err := v.states(nil)
		if err != nil {
			return md, fmt.Errorf("show %s: %w", id, err)
		}
		for i, ev := range v.envs {
			r, err := readEnvelopeOf(v.id, ev.seg, ev.off, i)
			if err != nil {
				return md, fmt.Errorf("show %s: %w", id, err)
			}
			ed := EnvelopeDetail{Group: g.cfg.Name, Dir: d.path, Sender: v.parts[r.part].sender, Domain: r.domain,
				Attempts: ev.attempts, Strikes: ev.strikes, Next: ev.next, Inflight: ev.inflight}
			for k, addr := range r.rcpts {
				st, rd := states[i][k], RecipientDetail{Address: addr}
				rd.Status, rd.Reply, rd.Host = statusName(st.status), st.reply.String(), st.reply.Host
				ed.Recipients = append(ed.Recipients, rd)
			}
			md.Envelopes = append(md.Envelopes, ed)
		}
	}
	if !found {
		return md, fmt.Errorf("%s: %w", id, ErrNoMessage)
	}
	return md, nil
}

func statusName(s rcptStatus) string {
	switch s {
	case rcptDelivered:
		return "delivered"
	case rcptFailed:
		return "failed"
	}
	return "pending"
}

// ErrNoGroup means a flush named a group the spool does not have.
var ErrNoGroup = errors.New("no such queue group")

// Flush makes deferred envelopes due now (sendmail -q, postqueue -f):
// in one group or all (group ""), to one domain or all (domain "").
// It returns how many envelopes it moved.
func (q *Queue) Flush(group, domain string) (int, error) {
	moved := 0
	for _, g := range q.order {
		if group != "" && g.cfg.Name != group {
			continue
		}
		moved += g.flush(domain)
		if group != "" {
			return moved, nil
		}
	}
	if group != "" {
		return 0, fmt.Errorf("%s: %w", group, ErrNoGroup)
	}
	return moved, nil
}

// Delete removes a message from every group (postsuper -d): a delete
// record makes it final across restarts; an attempt in progress finishes
// but its outcome is dropped. It returns the recipients still pending
// that will not be delivered.
func (q *Queue) Delete(id string) (int, error) {
	dropped, found := 0, false
	for _, g := range q.order {
		g.mu.Lock()
		d, m := g.share(id)
		g.mu.Unlock()
		if m == nil {
			continue
		}
		found = true
		if _, _, err := d.j.append(true, false, complete(encodeDelete(id))); err != nil {
			return dropped, fmt.Errorf("delete %s: %w", id, err)
		}
		g.mu.Lock()
		if d.msgs[id] == m {
			m.deleted = true
			dropped += m.pendingRcpts
			g.unschedule(m)
			d.retire(m)
		}
		g.mu.Unlock()
		q.log.Info("message deleted by the operator", "qid", id, "group", g.cfg.Name)
	}
	if !found {
		return 0, fmt.Errorf("%s: %w", id, ErrNoMessage)
	}
	return dropped, nil
}
