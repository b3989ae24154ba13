package lists

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"fanmail/address"
)

// progressEvery is how many rows pass between progress reports.
const progressEvery = 5000

// insertBatch is how many members one INSERT adds: 3 parameters each,
// far below the limits of SQLite (32766) and PostgreSQL (65535).
const insertBatch = 500

// insertMembersQuery is the INSERT of n members; a member already on the
// list, or given twice, is skipped and not counted.
func insertMembersQuery(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO members(list_id, address, domain) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?)")
	}
	b.WriteString(" ON CONFLICT DO NOTHING")
	return b.String()
}

// AddMembers adds addrs to list in one transaction: either all are
// applied or none. Every address must parse (the error lists each one
// that does not); addresses already on the list, or given twice, are
// skipped. It returns how many members were actually added.
func (s *Store) AddMembers(ctx context.Context, list string, addrs []string) (added int, err error) {
	return s.AddMembersProgress(ctx, list, addrs, nil)
}

// AddMembersProgress is AddMembers that calls progress(done, len(addrs))
// every few thousand rows, for imports large enough to show progress.
// progress may be nil.
func (s *Store) AddMembersProgress(ctx context.Context, list string, addrs []string, progress func(done, total int)) (added int, err error) {
	norm, domains, err := normalizeAll(addrs)
	if err != nil {
		return 0, fmt.Errorf("add members to %s: %w", list, err)
	}
	if bulk, ok := s.d.(memberImporter); ok {
		added, err = bulk.addMembers(ctx, s, list, norm, domains, progress)
	} else {
		added, err = s.insertMembers(ctx, list, norm, domains, progress)
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		// Cancelled halfway: database/sql rolls the transaction back
		// as ctx ends, and the next statement fails only with "statement
		// is closed"; the cause is what the caller needs.
		return 0, fmt.Errorf("add members to %s: %w", list, ctx.Err())
	}
	if err != nil {
		return 0, err
	}
	if progress != nil {
		progress(len(norm), len(norm))
	}
	return added, nil
}

// memberImporter is a dialect with a bulk path of its own for
// AddMembersProgress (PostgreSQL's COPY, postgres_members.go). It adds
// the normalized addresses norm, with their domains, in one write
// transaction, and returns how many were added; progress, if not nil,
// is called as insertMembers calls it, except for the final call.
type memberImporter interface {
	addMembers(ctx context.Context, s *Store, list string, norm, domains []string, progress func(done, total int)) (int, error)
}

// insertMembers is AddMembersProgress with multi-row INSERTs, for a
// dialect without a bulk path of its own (SQLite).
func (s *Store) insertMembers(ctx context.Context, list string, norm, domains []string, progress func(done, total int)) (added int, err error) {
	err = s.writeList(ctx, list, func(tx *sql.Tx, id int64) error {
		// Many rows per statement in one transaction: SQLite's cost is
		// the commit, so 100,000 rows take about half a second.
		var stmt *sql.Stmt
		for start := 0; start < len(norm); start += insertBatch {
			end := min(start+insertBatch, len(norm))
			args := make([]any, 0, 3*(end-start))
			for i := start; i < end; i++ {
				args = append(args, id, norm[i], domains[i])
			}
			q := insertMembersQuery(end - start)
			var res sql.Result
			var err error
			if end-start == insertBatch {
				if stmt == nil {
					if stmt, err = tx.PrepareContext(ctx, q); err != nil {
						return fmt.Errorf("add members to %s: %w", list, err)
					}
					defer stmt.Close()
				}
				res, err = stmt.ExecContext(ctx, args...)
			} else {
				res, err = tx.ExecContext(ctx, q, args...)
			}
			if err != nil {
				return fmt.Errorf("add members %s to %s: %w", norm[start], list, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("add members to %s: %w", list, err)
			}
			added += int(n)
			if progress != nil && end/progressEvery > start/progressEvery && end < len(norm) {
				progress(end, len(norm))
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

// RemoveMembers removes addrs from list in one transaction, all or
// nothing. Every address must parse; addresses that are not members are
// skipped. It returns how many members were actually removed.
func (s *Store) RemoveMembers(ctx context.Context, list string, addrs []string) (removed int, err error) {
	norm, _, err := normalizeAll(addrs)
	if err != nil {
		return 0, fmt.Errorf("remove members from %s: %w", list, err)
	}
	err = s.writeList(ctx, list, func(tx *sql.Tx, id int64) error {
		stmt, err := tx.PrepareContext(ctx, "DELETE FROM members WHERE list_id = ? AND address = ?")
		if err != nil {
			return fmt.Errorf("remove members from %s: %w", list, err)
		}
		defer stmt.Close()
		for _, a := range norm {
			n, err := execCount(ctx, stmt, id, a)
			if err != nil {
				return fmt.Errorf("remove %s from %s: %w", a, list, err)
			}
			removed += n
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return removed, nil
}

// Members returns the normalized addresses of list's members, ordered by
// domain, then address, or an error wrapping ErrNoList.
func (s *Store) Members(ctx context.Context, list string) ([]string, error) {
	// One statement, so the answer is one snapshot: the LEFT JOIN yields
	// a single NULL row for an empty list and no row for a missing one.
	rows, err := s.db.QueryContext(ctx, `
		SELECT m.address FROM lists l
		LEFT JOIN members m ON m.list_id = l.id
		WHERE l.address = ?
		ORDER BY m.domain, m.address`, lookupKey(list))
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", list, err)
	}
	defer rows.Close()
	found := false
	out := []string{}
	for rows.Next() {
		found = true
		var a sql.NullString
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("members of %s: %w", list, err)
		}
		if a.Valid {
			out = append(out, a.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("members of %s: %w", list, err)
	}
	if !found {
		return nil, fmt.Errorf("list %s: %w", list, ErrNoList)
	}
	return out, nil
}

// EachMember calls fn with the address and domain of each of list's
// members whose delivery is enabled (bounces.go), ordered by domain,
// then address (the members_by_domain index), reading them from the
// database as it goes: a list of any size costs the caller one row at a
// time. It returns an error wrapping ErrNoList for a missing list, or
// the first error from fn.
func (s *Store) EachMember(ctx context.Context, list string, fn func(addr, domain string) error) error {
	// A list without disabled members, the usual case, is read without
	// looking at each member's bounce state.
	disabled, err := hasRow(ctx, s.db, `SELECT 1 FROM member_bounces b JOIN lists l ON l.id = b.list_id
		WHERE l.address = ? AND b.disabled <> 0 LIMIT 1`, lookupKey(list))
	if err != nil {
		return fmt.Errorf("members of %s: %w", list, err)
	}
	skip := ""
	if disabled {
		skip = ` AND NOT EXISTS (SELECT 1 FROM member_bounces b
			WHERE b.list_id = m.list_id AND b.address = m.address AND b.disabled <> 0)`
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT m.address, m.domain FROM lists l
		LEFT JOIN members m ON m.list_id = l.id`+skip+`
		WHERE l.address = ?
		ORDER BY m.domain, m.address`, lookupKey(list))
	if err != nil {
		return fmt.Errorf("members of %s: %w", list, err)
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		found = true
		var a, d sql.NullString
		if err := rows.Scan(&a, &d); err != nil {
			return fmt.Errorf("members of %s: %w", list, err)
		}
		if !a.Valid {
			continue // the LEFT JOIN's row for an empty list
		}
		if err := fn(a.String, d.String); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("members of %s: %w", list, err)
	}
	if !found {
		return fmt.Errorf("list %s: %w", list, ErrNoList)
	}
	return nil
}

// normalizeAll normalizes every address, returning the normal forms and
// their domains, or an error naming every address that does not parse.
func normalizeAll(addrs []string) (norm, domains []string, err error) {
	norm = make([]string, 0, len(addrs))
	domains = make([]string, 0, len(addrs))
	var errs []error
	for _, a := range addrs {
		m, err := address.Parse(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", a, err))
			continue
		}
		norm = append(norm, m.String())
		domains = append(domains, m.Domain)
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("%s, nothing applied:\n%w", plural(len(errs), "bad address", "bad addresses"), errors.Join(errs...))
	}
	return norm, domains, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// writeList runs fn in a write transaction with the id of list, or
// returns an error wrapping ErrNoList.
func (s *Store) writeList(ctx context.Context, list string, fn func(tx *sql.Tx, id int64) error) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		id, err := listID(ctx, tx, list)
		if err != nil {
			return err
		}
		return fn(tx, id)
	})
}

// execCount runs stmt and returns how many rows it changed.
func execCount(ctx context.Context, stmt *sql.Stmt, args ...any) (int, error) {
	res, err := stmt.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
