package lists

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// dialect is what differs between the two databases the store runs on.
// Every query in this package is written once, in the SQL both accept,
// with ? placeholders (the PostgreSQL driver rewrites them, rebind.go);
// the dialect covers the rest:
//
//   - the migrations' DDL is written for SQLite and translated (types,
//     collations, WITHOUT ROWID);
//   - where the schema version is kept and how migrations exclude each
//     other;
//   - how a write transaction takes the store's single write lock up
//     front (SQLite: BEGIN IMMEDIATE; PostgreSQL: the row of the change
//     counter), which is what makes read-then-write in one transaction
//     safe on both;
//   - Version, the change detector;
//   - what a copy between stores must fix after inserting ids.
type dialect interface {
	// name is "sqlite" or "postgres".
	name() string
	// ddl translates a migration step written for SQLite.
	ddl(step string) string
	// lockSchema starts a migration in tx: it excludes other processes
	// migrating the same database and returns the schema version.
	lockSchema(ctx context.Context, tx *sql.Tx) (int, error)
	// setSchemaVersion records v as the schema version in tx.
	setSchemaVersion(ctx context.Context, tx *sql.Tx, v int) error
	// beginWrite is the first statement of every write transaction.
	beginWrite(ctx context.Context, tx *sql.Tx) error
	// version reads the change detector.
	version(ctx context.Context) (int64, error)
	// snapshot begins a read-only transaction that sees one state of
	// every table.
	snapshot(ctx context.Context) (*sql.Tx, error)
	// tables lists the store's tables, whatever their order.
	tables(ctx context.Context, q querier) ([]string, error)
	// idFloors returns, per table with an id generator, the lowest id
	// it may hand out next: ids of deleted rows are never reused (a
	// moderation token names a post by its id after the post is gone).
	idFloors(ctx context.Context, q querier) (map[string]int64, error)
	// afterCopy brings id generators past the ids a copy inserted and
	// at least to the source's floors.
	afterCopy(ctx context.Context, tx *sql.Tx, floors map[string]int64) error
	close() error
}

// querier is what both *sql.DB and *sql.Tx offer for reading rows.
type querier interface {
	queryer
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// sqliteDialect is the embedded store.
type sqliteDialect struct {
	db *sql.DB
	// versionConn is used for PRAGMA data_version only and never writes,
	// so every commit on any other connection, this process's pool
	// included, changes the value it reports.
	mu          sync.Mutex
	versionConn *sql.Conn
}

func (*sqliteDialect) name() string           { return "sqlite" }
func (*sqliteDialect) ddl(step string) string { return step }

// lockSchema needs no lock of its own: the transaction began with BEGIN
// IMMEDIATE (the DSN's _txlock), so a second process waits for it.
func (*sqliteDialect) lockSchema(ctx context.Context, tx *sql.Tx) (int, error) {
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func (*sqliteDialect) setSchemaVersion(ctx context.Context, tx *sql.Tx, v int) error {
	// PRAGMA takes no bound parameters; the value is our own integer.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	return nil
}

// beginWrite has nothing to do: BEGIN IMMEDIATE took the lock.
func (*sqliteDialect) beginWrite(context.Context, *sql.Tx) error { return nil }

func (d *sqliteDialect) version(ctx context.Context) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var v int64
	if err := d.versionConn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
		return 0, err
	}
	return v, nil
}

// snapshot is a write transaction: SQLite offers no read-only BEGIN
// through the driver, and holding the write lock for a copy keeps
// writers out for its duration, which a copy wants anyway.
func (d *sqliteDialect) snapshot(ctx context.Context) (*sql.Tx, error) {
	return d.db.BeginTx(ctx, nil)
}

func (*sqliteDialect) tables(ctx context.Context, q querier) ([]string, error) {
	return collect(ctx, q, "read table names", scanString, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
}

func (*sqliteDialect) idFloors(ctx context.Context, q querier) (map[string]int64, error) {
	rows, err := q.QueryContext(ctx, "SELECT name, seq FROM sqlite_sequence")
	if err != nil {
		return nil, fmt.Errorf("read id sequences: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var t string
		var seq int64
		if err := rows.Scan(&t, &seq); err != nil {
			return nil, fmt.Errorf("read id sequences: %w", err)
		}
		out[t] = seq + 1
	}
	return out, rows.Err()
}

// afterCopy raises AUTOINCREMENT's sqlite_sequence to the floors; it
// already follows the ids inserted. A plain INTEGER PRIMARY KEY has no
// sequence and continues after the highest id.
func (*sqliteDialect) afterCopy(ctx context.Context, tx *sql.Tx, floors map[string]int64) error {
	known, err := collect(ctx, tx, "read id sequences", scanString, "SELECT name FROM sqlite_sequence")
	if err != nil {
		return err
	}
	auto, err := collect(ctx, tx, "read id sequences", scanString, "SELECT name FROM sqlite_schema WHERE type = 'table' AND sql LIKE '%AUTOINCREMENT%'")
	if err != nil {
		return err
	}
	for t, floor := range floors {
		if !slices.Contains(auto, t) {
			continue
		}
		q := "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?"
		if !slices.Contains(known, t) {
			q = "INSERT INTO sqlite_sequence(seq, name) VALUES(?, ?)"
		}
		if _, err := tx.ExecContext(ctx, q, floor-1, t); err != nil {
			return fmt.Errorf("advance the ids of %s: %w", t, err)
		}
	}
	return nil
}

func (d *sqliteDialect) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.versionConn.Close()
}

// pgDDL translates a migration step written for SQLite into PostgreSQL,
// line by line, so that a new step is written once:
//
//   - INTEGER PRIMARY KEY [AUTOINCREMENT] becomes an identity column
//     (ids are never reused, as with AUTOINCREMENT);
//   - INTEGER becomes BIGINT (SQLite's integers are 64-bit), REAL
//     DOUBLE PRECISION (SQLite's REAL is 8 bytes), BLOB BYTEA;
//   - COLLATE NOCASE becomes the case-insensitive ICU collation
//     fanmail_nocase;
//   - every other TEXT column gets COLLATE "C", so that ORDER BY sorts
//     by bytes as SQLite's BINARY does, whatever the database's locale;
//   - WITHOUT ROWID goes.
func pgDDL(step string) string {
	lines := strings.Split(step, "\n")
	for i, l := range lines {
		code, comment := l, ""
		if j := strings.Index(l, "--"); j >= 0 {
			code, comment = l[:j], l[j:]
		}
		code = pgIntegerKey.ReplaceAllString(code, "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
		code = pgInteger.ReplaceAllString(code, "BIGINT")
		code = pgReal.ReplaceAllString(code, "DOUBLE PRECISION")
		code = pgBlob.ReplaceAllString(code, "BYTEA")
		if strings.Contains(code, "COLLATE NOCASE") {
			code = strings.ReplaceAll(code, "COLLATE NOCASE", "COLLATE fanmail_nocase")
		} else {
			code = pgText.ReplaceAllString(code, `TEXT COLLATE "C"`)
		}
		code = pgWithoutRowid.ReplaceAllString(code, ")")
		lines[i] = code + comment
	}
	return strings.Join(lines, "\n")
}
