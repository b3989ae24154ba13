package lists

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrNotEmpty means a copy's target store already holds rows.
var ErrNotEmpty = errors.New("target store is not empty")

// TableCount is how many rows of one table a copy read and wrote.
type TableCount struct {
	Table string
	Rows  int64
}

// copyBatch bounds one INSERT of a copy: rows, parameters, and bytes of
// text and blobs (a post's body comes in 256 KiB chunks).
const (
	copyBatchRows   = 500
	copyBatchParams = 30000
	copyBatchBytes  = 8 << 20
)

// Copy copies every row of every table of from into to, which must be
// empty, in one transaction on to: the target has everything or
// nothing. The source is read in one snapshot (on SQLite that holds its
// write lock for the duration: stop the servers first, or their writes
// wait). Ids are copied as they are, and the target's id generators are
// set past them and past every id the source ever handed out, so that a
// post id named by a moderation token is never reused. Before committing
// it counts each table on both sides and fails unless they agree.
// progress, if not nil, is called after each table.
func Copy(ctx context.Context, from, to *Store, progress func(TableCount)) ([]TableCount, error) {
	src, err := from.d.snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", from, err)
	}
	defer src.Rollback()
	if err := checkTables(ctx, from.d, src, from.target); err != nil {
		return nil, err
	}
	floors, err := from.d.idFloors(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", from, err)
	}
	var counts []TableCount
	err = to.write(ctx, func(dst *sql.Tx) error {
		if err := checkTables(ctx, to.d, dst, to.target); err != nil {
			return err
		}
		for _, t := range tableOrder {
			var n int64
			if err := dst.QueryRowContext(ctx, "SELECT count(*) FROM "+t).Scan(&n); err != nil {
				return fmt.Errorf("count %s in %s: %w", t, to, err)
			}
			if n > 0 {
				return fmt.Errorf("%w: %s has %d rows in table %s; copy only into a new, empty database", ErrNotEmpty, to, n, t)
			}
		}
		counts = counts[:0]
		for _, t := range tableOrder {
			n, err := copyTable(ctx, src, dst, t)
			if err != nil {
				return fmt.Errorf("copy table %s: %w", t, err)
			}
			c := TableCount{Table: t, Rows: n}
			counts = append(counts, c)
			if progress != nil {
				progress(c)
			}
		}
		if err := to.d.afterCopy(ctx, dst, floors); err != nil {
			return err
		}
		for _, c := range counts {
			var have, had int64
			if err := src.QueryRowContext(ctx, "SELECT count(*) FROM "+c.Table).Scan(&had); err != nil {
				return fmt.Errorf("count %s in %s: %w", c.Table, from, err)
			}
			if err := dst.QueryRowContext(ctx, "SELECT count(*) FROM "+c.Table).Scan(&have); err != nil {
				return fmt.Errorf("count %s in %s: %w", c.Table, to, err)
			}
			if have != had || have != c.Rows {
				return fmt.Errorf("copy table %s: the source has %d rows, %d were copied and the target has %d; nothing was copied",
					c.Table, had, c.Rows, have)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return counts, nil
}

// checkTables makes sure that tableOrder names exactly the store's
// tables, so that a table added by a migration and not to tableOrder
// stops a copy rather than being left behind.
func checkTables(ctx context.Context, d dialect, q querier, name string) error {
	have, err := d.tables(ctx, q)
	if err != nil {
		return fmt.Errorf("list the tables of %s: %w", name, err)
	}
	for _, t := range have {
		if !slices.Contains(tableOrder, t) {
			return fmt.Errorf("%s has a table %s that this fanmail does not know how to copy", name, t)
		}
	}
	for _, t := range tableOrder {
		if !slices.Contains(have, t) {
			return fmt.Errorf("%s lacks the table %s", name, t)
		}
	}
	return nil
}

// copyTable copies the rows of table from src to dst in batches and
// returns how many it copied. The columns are the source's, by name, so
// the two schemas need only agree on names (both are at the same
// version).
func copyTable(ctx context.Context, src, dst *sql.Tx, table string) (int64, error) {
	rows, err := src.QueryContext(ctx, "SELECT * FROM "+table)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	perBatch := min(copyBatchRows, copyBatchParams/len(cols))
	var (
		n     int64
		batch []any
		rowsN int
		bytes int
	)
	flush := func() error {
		if rowsN == 0 {
			return nil
		}
		if _, err := dst.ExecContext(ctx, insertRows(table, cols, rowsN), batch...); err != nil {
			return err
		}
		n += int64(rowsN)
		batch, rowsN, bytes = batch[:0], 0, 0
		return nil
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				bytes += len(v)
			case string:
				bytes += len(v)
			}
		}
		batch = append(batch, vals...)
		rowsN++
		if rowsN >= perBatch || bytes >= copyBatchBytes {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	return n, flush()
}

// insertRows is the INSERT of n rows of cols into table.
func insertRows(table string, cols []string, n int) string {
	var b strings.Builder
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	fmt.Fprintf(&b, "INSERT INTO %s(%s) VALUES ", table, strings.Join(cols, ", "))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(one)
	}
	return b.String()
}
