package lists

import (
	"context"
	"fmt"
)

// collect runs query on q and returns what scan makes of each row, in
// order (nil for none); what names the reading in its errors ("read
// lists: ..."). scan is given the row's Scan, as scanList takes it.
func collect[T any](ctx context.Context, q rowQueryer, what string, scan func(func(...any) error) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// scanString reads a row of one text column.
func scanString(scan func(...any) error) (string, error) {
	var s string
	err := scan(&s)
	return s, err
}
