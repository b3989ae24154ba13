package lists

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"fanmail/address"
)

// AddModerators makes addrs moderators of list, all or nothing: every
// address must parse (the error names each one that does not). It
// returns how many were not moderators before.
func (s *Store) AddModerators(ctx context.Context, list string, addrs []string) (added int, err error) {
	return s.changeModerators(ctx, list, addrs, "add moderators to",
		"INSERT INTO moderators(list_id, address) VALUES(?, ?) ON CONFLICT DO NOTHING")
}

// RemoveModerators removes addrs from list's moderators, all or nothing.
// It returns how many were moderators.
func (s *Store) RemoveModerators(ctx context.Context, list string, addrs []string) (removed int, err error) {
	return s.changeModerators(ctx, list, addrs, "remove moderators from",
		"DELETE FROM moderators WHERE list_id = ? AND address = ?")
}

func (s *Store) changeModerators(ctx context.Context, list string, addrs []string, what, stmt string) (n int, err error) {
	norm, _, err := normalizeAll(addrs)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", what, list, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		id, err := listID(ctx, tx, list)
		if err != nil {
			return err
		}
		for _, a := range norm {
			res, err := tx.ExecContext(ctx, stmt, id, a)
			if err != nil {
				return fmt.Errorf("%s %s: %s: %w", what, list, a, err)
			}
			k, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("%s %s: %s: %w", what, list, a, err)
			}
			n += int(k)
		}
		return nil
	})
	return n, err
}

// Moderators returns list's moderators in address order, or an error
// wrapping ErrNoList.
func (s *Store) Moderators(ctx context.Context, list string) ([]string, error) {
	id, err := listID(ctx, s.db, list)
	if err != nil {
		return nil, err
	}
	out, err := moderatorsOf(ctx, s.db, id, list)
	if out == nil && err == nil {
		out = []string{}
	}
	return out, err
}

// moderatorsOf returns the moderators of list, whose id is lid, in q's
// view (a transaction's, say), ordered.
func moderatorsOf(ctx context.Context, q rowQueryer, lid int64, list string) ([]string, error) {
	return collect(ctx, q, "moderators of "+list, scanString, "SELECT address FROM moderators WHERE list_id = ? ORDER BY address", lid)
}

// IsMember reports whether addr is a member of list. Local parts are
// compared without regard to case, as most mail systems treat them and
// as Mailman does: Bob@example.org may post for bob@example.org. An addr
// that does not parse is no member.
func (s *Store) IsMember(ctx context.Context, list, addr string) (bool, error) {
	return s.isIn(ctx, "members", list, addr)
}

// IsModerator reports whether addr is a moderator of list, compared as
// IsMember compares.
func (s *Store) IsModerator(ctx context.Context, list, addr string) (bool, error) {
	return s.isIn(ctx, "moderators", list, addr)
}

// isIn looks addr up in table (members or moderators): the exact normal
// form first (the primary key), then a case-insensitive match among the
// addresses of the same domain.
func (s *Store) isIn(ctx context.Context, table, list, addr string) (bool, error) {
	m, err := address.Parse(addr)
	if err != nil {
		return false, nil
	}
	norm := m.String()
	id, err := listID(ctx, s.db, list)
	if err != nil {
		return false, err
	}
	var one int
	err = s.db.QueryRowContext(ctx, "SELECT 1 FROM "+table+" WHERE list_id = ? AND address = ?", id, norm).Scan(&one)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("look up %s in %s of %s: %w", norm, table, list, err)
	}
	// The domain is lowercase in both forms, so a suffix match with LIKE
	// (case-insensitive for ASCII) finds the other spellings; members use
	// their domain index.
	q := "SELECT address FROM moderators WHERE list_id = ? AND address LIKE ? ESCAPE '\\'"
	args := []any{id, "%@" + likeEscape(m.Domain)}
	if table == "members" {
		q = "SELECT address FROM members WHERE list_id = ? AND domain = ?"
		args = []any{id, m.Domain}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("look up %s in %s of %s: %w", norm, table, list, err)
	}
	defer rows.Close()
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return false, fmt.Errorf("look up %s in %s of %s: %w", norm, table, list, err)
		}
		if strings.EqualFold(a, norm) {
			return true, nil
		}
	}
	return false, rows.Err()
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}
