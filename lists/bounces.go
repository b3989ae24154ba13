package lists

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"fanmail/address"
	"fanmail/bounces"
)

// Members' bounces. Each bounce that names a member is kept as evidence
// (the last maxBounceEvents per member, each bounded), and the member's
// score and delivery state (bounces.State) change in the same
// transaction, by the pure rules of package bounces. A member whose
// delivery is disabled stays a member (they may still post, and
// `fanmail member ls` shows them) but gets no copies: EachMember skips
// them. Removing the member removes both.

// ErrNotMember means the address is not a member of the list.
var ErrNotMember = errors.New("not a member")

// maxBounceEvents is how many bounces of one member are kept.
const maxBounceEvents = 20

// Limits of an event's text fields, in bytes.
const (
	maxEventText     = 1000
	maxEventEvidence = 2048
)

// BounceEvent is one bounce of a member, as evidence.
type BounceEvent struct {
	At         time.Time
	Source     string // "dsn": a report mailed back; "smtp": a reply during delivery
	Action     string // failed, delayed
	Status     string // RFC 3463
	Severity   string // hard, soft
	Diagnostic string
	RemoteMTA  string
	Evidence   string // an excerpt of the report or the reply
	Scored     string // what the score made of it
}

// MemberBounces is a member's bounce state, with its evidence when asked.
type MemberBounces struct {
	List, Address string
	State         bounces.State
	Events        []BounceEvent // newest first
}

// Scorer turns a member's state into the next one and says what to do.
type Scorer func(bounces.State) (bounces.State, bounces.Decision)

// RecordBounce records ev for the member addr of list and applies score
// to the member's state, in one transaction, and returns the decision
// and the member's address as stored. An address that is no member is
// ErrNotMember, and nothing is recorded.
func (s *Store) RecordBounce(ctx context.Context, list, addr string, ev BounceEvent, score Scorer) (string, bounces.Decision, error) {
	res, err := s.RecordBounces(ctx, list, []BounceRecord{{Address: addr, Event: ev, Score: score}})
	if err != nil {
		return "", bounces.Decision{}, err
	}
	if res[0].NotMember {
		return "", bounces.Decision{}, fmt.Errorf("%s: %w", addr, ErrNotMember)
	}
	return res[0].Member, res[0].Decision, nil
}

// BounceRecord is one bounce to record: the address it names, its
// evidence and how it changes the member's score.
type BounceRecord struct {
	Address string
	Event   BounceEvent
	Score   Scorer
}

// BounceResult is what recording one bounce did.
type BounceResult struct {
	Member    string // the member's address as stored
	Decision  bounces.Decision
	NotMember bool // the address is no member: nothing was recorded
}

// RecordBounces records several bounces of list's members in one
// transaction (a commit costs a disk flush, a row next to nothing), in
// order, each as RecordBounce would, and returns a result for each.
func (s *Store) RecordBounces(ctx context.Context, list string, recs []BounceRecord) ([]BounceResult, error) {
	out := make([]BounceResult, len(recs))
	err := s.writeList(ctx, list, func(sqlTx *sql.Tx, lid int64) error {
		tx := newPreparedTx(sqlTx)
		defer tx.close()
		for i, r := range recs {
			member, err := findMember(ctx, tx, lid, r.Address)
			if errors.Is(err, ErrNotMember) {
				out[i] = BounceResult{NotMember: true}
				continue
			}
			if err != nil {
				return err
			}
			st, err := bounceState(ctx, tx, lid, member)
			if err != nil {
				return err
			}
			next, d := r.Score(st)
			if err := putBounceState(ctx, tx, lid, member, next); err != nil {
				return err
			}
			ev := r.Event
			ev.Scored = d.Reason
			if err := addBounceEvent(ctx, tx, lid, member, ev); err != nil {
				return err
			}
			out[i] = BounceResult{Member: member, Decision: d}
		}
		return nil
	})
	return out, err
}

// Domains returns the domains that have lists, each once.
func (s *Store) Domains(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT address FROM lists")
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("list domains: %w", err)
		}
		if d := strings.ToLower(domainOf(a)); d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out, rows.Err()
}

// UpdateBounce applies fn to the bounce state of member addr of list in
// one transaction; a Remove decision removes the member in it too.
func (s *Store) UpdateBounce(ctx context.Context, list, addr string, fn Scorer) (bounces.Decision, error) {
	var d bounces.Decision
	err := s.writeList(ctx, list, func(tx *sql.Tx, lid int64) error {
		member, st, err := memberBounceState(ctx, tx, lid, addr)
		if err != nil {
			return err
		}
		var next bounces.State
		next, d = fn(st)
		if d.Verdict == bounces.Remove {
			_, err := tx.ExecContext(ctx, "DELETE FROM members WHERE list_id = ? AND address = ?", lid, member)
			return err
		}
		return putBounceState(ctx, tx, lid, member, next)
	})
	return d, err
}

// EnableMember gives member addr of list back its delivery and a clean
// score, and reports whether its delivery was disabled. The evidence
// stays.
func (s *Store) EnableMember(ctx context.Context, list, addr string) (bool, error) {
	var was bool
	err := s.writeList(ctx, list, func(tx *sql.Tx, lid int64) error {
		member, st, err := memberBounceState(ctx, tx, lid, addr)
		if err != nil {
			return err
		}
		was = !st.Disabled.IsZero()
		_, err = tx.ExecContext(ctx, "DELETE FROM member_bounces WHERE list_id = ? AND address = ?", lid, member)
		return err
	})
	return was, err
}

// DisabledMembers returns every member of every list whose delivery
// bounces disabled, without evidence.
func (s *Store) DisabledMembers(ctx context.Context) ([]MemberBounces, error) {
	return s.bouncing(ctx, `SELECT l.address, b.address, b.score, b.last_bounce, b.disabled, b.warnings_sent, b.last_warning
		FROM member_bounces b JOIN lists l ON l.id = b.list_id WHERE b.disabled <> 0 ORDER BY l.address, b.address`)
}

// BouncingMembers returns the members of list with a bounce score or
// disabled delivery, without evidence, or an error wrapping ErrNoList.
func (s *Store) BouncingMembers(ctx context.Context, list string) ([]MemberBounces, error) {
	id, err := listID(ctx, s.db, list)
	if err != nil {
		return nil, err
	}
	return s.bouncing(ctx, `SELECT l.address, b.address, b.score, b.last_bounce, b.disabled, b.warnings_sent, b.last_warning
		FROM member_bounces b JOIN lists l ON l.id = b.list_id WHERE b.list_id = ? AND (b.score > 0 OR b.disabled <> 0)
		ORDER BY b.disabled = 0, b.score DESC, b.address`, id)
}

func (s *Store) bouncing(ctx context.Context, query string, args ...any) ([]MemberBounces, error) {
	return collect(ctx, s.db, "bouncing members", scanMemberBounces, query, args...)
}

func scanMemberBounces(scan func(...any) error) (MemberBounces, error) {
	var m MemberBounces
	var last, disabled, lastWarn int64
	if err := scan(&m.List, &m.Address, &m.State.Score, &last, &disabled, &m.State.WarningsSent, &lastWarn); err != nil {
		return MemberBounces{}, err
	}
	m.State.LastBounce, m.State.Disabled, m.State.LastWarning = fromUnix(last), fromUnix(disabled), fromUnix(lastWarn)
	return m, nil
}

// MemberBounceInfo returns the bounce state and evidence of member addr
// of list: ErrNoList, or ErrNotMember.
func (s *Store) MemberBounceInfo(ctx context.Context, list, addr string) (MemberBounces, error) {
	lid, err := listID(ctx, s.db, list)
	if err != nil {
		return MemberBounces{}, err
	}
	m := MemberBounces{}
	if err := s.db.QueryRowContext(ctx, "SELECT address FROM lists WHERE id = ?", lid).Scan(&m.List); err != nil {
		return m, fmt.Errorf("list %s: %w", list, err)
	}
	if m.Address, m.State, err = memberBounceState(ctx, s.db, lid, addr); err != nil {
		return m, err
	}
	m.Events, err = collect(ctx, s.db, "bounces of "+addr, scanBounceEvent,
		`SELECT at, source, action, status, severity, diagnostic, remote_mta, evidence, scored
		FROM bounce_events WHERE list_id = ? AND address = ? ORDER BY id DESC`, lid, m.Address)
	return m, err
}

func scanBounceEvent(scan func(...any) error) (BounceEvent, error) {
	var e BounceEvent
	var at int64
	if err := scan(&at, &e.Source, &e.Action, &e.Status, &e.Severity, &e.Diagnostic, &e.RemoteMTA, &e.Evidence, &e.Scored); err != nil {
		return BounceEvent{}, err
	}
	e.At = time.Unix(at, 0)
	return e, nil
}

// memberBounceState returns the stored form of member addr of the list
// with id lid (findMember) and its bounce state.
func memberBounceState(ctx context.Context, q querier, lid int64, addr string) (string, bounces.State, error) {
	member, err := findMember(ctx, q, lid, addr)
	if err != nil {
		return "", bounces.State{}, err
	}
	st, err := bounceState(ctx, q, lid, member)
	return member, st, err
}

// findMember returns the stored form of member addr of the list with id
// lid: the exact normal form, else a case-insensitive match of the local
// part (as IsMember matches).
func findMember(ctx context.Context, q querier, lid int64, addr string) (string, error) {
	m, err := address.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("%q: %w", addr, ErrNotMember)
	}
	norm := m.String()
	if ok, err := hasRow(ctx, q, "SELECT 1 FROM members WHERE list_id = ? AND address = ?", lid, norm); err != nil || ok {
		return norm, err
	}
	rows, err := q.QueryContext(ctx, "SELECT address FROM members WHERE list_id = ? AND domain = ?", lid, m.Domain)
	if err != nil {
		return "", fmt.Errorf("look up member %s: %w", norm, err)
	}
	defer rows.Close()
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return "", fmt.Errorf("look up member %s: %w", norm, err)
		}
		if strings.EqualFold(a, norm) {
			return a, nil
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("look up member %s: %w", norm, err)
	}
	return "", fmt.Errorf("%s: %w", norm, ErrNotMember)
}

func bounceState(ctx context.Context, q queryer, lid int64, member string) (bounces.State, error) {
	var st bounces.State
	var last, disabled, lastWarn int64
	err := q.QueryRowContext(ctx, `SELECT score, last_bounce, disabled, warnings_sent, last_warning
		FROM member_bounces WHERE list_id = ? AND address = ?`, lid, member).
		Scan(&st.Score, &last, &disabled, &st.WarningsSent, &lastWarn)
	if errors.Is(err, sql.ErrNoRows) {
		return bounces.State{}, nil
	}
	if err != nil {
		return st, fmt.Errorf("bounce state of %s: %w", member, err)
	}
	st.LastBounce, st.Disabled, st.LastWarning = fromUnix(last), fromUnix(disabled), fromUnix(lastWarn)
	return st, nil
}

func putBounceState(ctx context.Context, tx execer, lid int64, member string, st bounces.State) error {
	var err error
	if st == (bounces.State{}) {
		_, err = tx.ExecContext(ctx, "DELETE FROM member_bounces WHERE list_id = ? AND address = ?", lid, member)
	} else {
		_, err = tx.ExecContext(ctx, `INSERT INTO member_bounces(list_id, address, score, last_bounce, disabled, warnings_sent, last_warning)
			VALUES(?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(list_id, address) DO UPDATE SET score = excluded.score, last_bounce = excluded.last_bounce,
				disabled = excluded.disabled, warnings_sent = excluded.warnings_sent, last_warning = excluded.last_warning`,
			lid, member, st.Score, toUnix(st.LastBounce), toUnix(st.Disabled), st.WarningsSent, toUnix(st.LastWarning))
	}
	if err != nil {
		return fmt.Errorf("bounce state of %s: %w", member, err)
	}
	return nil
}

func addBounceEvent(ctx context.Context, tx execer, lid int64, member string, e BounceEvent) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO bounce_events(list_id, address, at, source, action, status, severity,
		diagnostic, remote_mta, evidence, scored) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		lid, member, e.At.Unix(), clipText(e.Source, 20), clipText(e.Action, 20), clipText(e.Status, 20),
		clipText(e.Severity, 20), clipText(e.Diagnostic, maxEventText), clipText(e.RemoteMTA, 255),
		clipText(e.Evidence, maxEventEvidence), clipText(e.Scored, maxEventText))
	if err != nil {
		return fmt.Errorf("record bounce of %s: %w", member, err)
	}
	// Only the newest few are kept: everything at or below the id of the
	// first one past them, which is NULL (nothing to delete) for a member
	// with fewer, one index seek either way.
	_, err = tx.ExecContext(ctx, `DELETE FROM bounce_events WHERE list_id = ? AND address = ? AND id <=
		(SELECT id FROM bounce_events WHERE list_id = ? AND address = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`,
		lid, member, lid, member, maxBounceEvents)
	if err != nil {
		return fmt.Errorf("record bounce of %s: %w", member, err)
	}
	return nil
}

// execer is what both *sql.Tx and *preparedTx offer for writing.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// clipText cuts s to at most n bytes, on a UTF-8 boundary.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

func toUnix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}
