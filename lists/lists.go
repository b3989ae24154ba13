package lists

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"fanmail/address"
)

// List describes one list.
type List struct {
	Address string // normalized; the case of the local part as created
	Owner   string // normalized, or "" if none
	Created time.Time
	Members int
}

// lookupKey is the form a list address is looked up by: normalized when
// it parses (so "<Announce@Example.ORG>" finds announce@example.org, with
// the column's NOCASE collation doing the rest), as given otherwise, which
// then simply matches no list.
func lookupKey(list string) string {
	if n, err := address.Normalize(list); err == nil {
		return n
	}
	return list
}

// CreateList creates an empty list. Both addresses must parse with
// address.Parse; owner may be "". It returns an error wrapping
// ErrListExists if a list with that address exists.
func (s *Store) CreateList(ctx context.Context, list, owner string) error {
	addr, err := address.Normalize(list)
	if err != nil {
		return fmt.Errorf("list address %q: %w", list, err)
	}
	if owner != "" {
		norm, err := address.Normalize(owner)
		if err != nil {
			return fmt.Errorf("owner address %q: %w", owner, err)
		}
		owner = norm
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		err := execOne(ctx, tx, ErrListExists,
			"INSERT INTO lists(address, owner, created) VALUES(?, ?, ?) ON CONFLICT(address) DO NOTHING",
			addr, owner, s.now().Unix())
		if err != nil {
			return fmt.Errorf("create list %s: %w", addr, err)
		}
		return nil
	})
}

// DeleteList deletes a list and all its members.
func (s *Store) DeleteList(ctx context.Context, list string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		err := execOne(ctx, tx, ErrNoList, "DELETE FROM lists WHERE address = ?", lookupKey(list))
		if errors.Is(err, ErrNoList) {
			return fmt.Errorf("list %s: %w", list, err)
		}
		if err != nil {
			return fmt.Errorf("delete list %s: %w", list, err)
		}
		return nil
	})
}

// execOne runs a statement that should change a row, and returns none
// when it changed nothing.
func execOne(ctx context.Context, tx *sql.Tx, none error, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return none
	}
	return nil
}

const listColumns = `l.address, l.owner, l.created,
	(SELECT count(*) FROM members m WHERE m.list_id = l.id)`

func scanList(scan func(...any) error) (List, error) {
	var l List
	var created int64
	if err := scan(&l.Address, &l.Owner, &created, &l.Members); err != nil {
		return List{}, err
	}
	l.Created = time.Unix(created, 0)
	return l, nil
}

// FindList is GetList without the member count (Members is 0): what the
// server asks on its lookups, where counting a big list's members would
// read all of them each time.
func (s *Store) FindList(ctx context.Context, list string) (List, error) {
	return s.oneList(ctx, "SELECT l.address, l.owner, l.created, 0 FROM lists l WHERE l.address = ?", list)
}

// GetList returns the list whose address is list, compared
// case-insensitively, or an error wrapping ErrNoList.
func (s *Store) GetList(ctx context.Context, list string) (List, error) {
	return s.oneList(ctx, "SELECT "+listColumns+" FROM lists l WHERE l.address = ?", list)
}

// oneList reads the list whose address is list with query, which
// selects what scanList reads.
func (s *Store) oneList(ctx context.Context, query, list string) (List, error) {
	l, err := scanList(s.db.QueryRowContext(ctx, query, lookupKey(list)).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return List{}, fmt.Errorf("list %s: %w", list, ErrNoList)
	}
	if err != nil {
		return List{}, fmt.Errorf("get list %s: %w", list, err)
	}
	return l, nil
}

// Lists returns every list, ordered by address.
func (s *Store) Lists(ctx context.Context) ([]List, error) {
	return collect(ctx, s.db, "read lists", scanList, "SELECT "+listColumns+" FROM lists l ORDER BY l.address")
}
