package lists

import (
	"context"
	"database/sql"
	"fmt"
)

// preparedTx runs a transaction's statements each prepared once, on
// first use: a batch of bounce records runs the same few statements for
// every record, and preparing each again per record (SQLite parses and
// plans it every time) was about half of what recording one cost.
type preparedTx struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

func newPreparedTx(tx *sql.Tx) *preparedTx {
	return &preparedTx{tx: tx, stmts: map[string]*sql.Stmt{}}
}

func (p *preparedTx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st := p.stmts[query]; st != nil {
		return st, nil
	}
	st, err := p.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	p.stmts[query] = st
	return st, nil
}

// QueryRowContext runs query prepared; a statement that cannot be
// prepared runs unprepared, so that its error reaches Scan.
func (p *preparedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return p.tx.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (p *preparedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (p *preparedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// close releases the statements; the transaction's end would too.
func (p *preparedTx) close() {
	for _, st := range p.stmts {
		st.Close()
	}
}
