package lists

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// The PostgreSQL store serves several fanmail nodes at once: every
// process that opens the same database (servers on several machines, the
// CLI anywhere) sees every other's commits. It keeps the same tables as
// the SQLite file, created by the same migrations (pgDDL translates
// them), plus one row of its own:
//
//	fanmail_schema(version, changes)
//
// version is the schema version (SQLite keeps it in PRAGMA
// user_version); changes counts write transactions. Every write
// transaction updates that row first, which serializes writers as BEGIN
// IMMEDIATE does in SQLite (so a read followed by a write in one
// transaction sees no other writer's change in between, under the
// default READ COMMITTED), and Version reads it, so a node sees a
// change made anywhere at its next read: the expander checks Version per
// post, the moderation runner every 200ms.

// IsPostgres reports whether target names a PostgreSQL database (a
// postgres:// or postgresql:// URL) rather than a SQLite file.
func IsPostgres(target string) bool {
	return strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://")
}

// SQLiteFile returns the file of a store target that is SQLite
// (sqlite:PATH or a plain PATH), and false for a PostgreSQL one.
func SQLiteFile(target string) (string, bool) {
	if IsPostgres(target) {
		return "", false
	}
	return strings.TrimPrefix(target, "sqlite:"), true
}

// Describe returns target fit for a log line or an error: a URL's
// password is replaced by xxxxx.
func Describe(target string) string {
	if !IsPostgres(target) {
		return target
	}
	u, err := url.Parse(target)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return u.Redacted()
}

// schemaLock is the key of the advisory lock that migrations take, so
// that two nodes starting at once against a new database do not both
// create it. The value is arbitrary and fixed: "fanmail" in ASCII.
const schemaLock = 0x66616e6d61696c

var (
	pgIntegerKey   = regexp.MustCompile(`\bINTEGER PRIMARY KEY( AUTOINCREMENT)?\b`)
	pgInteger      = regexp.MustCompile(`\bINTEGER\b`)
	pgReal         = regexp.MustCompile(`\bREAL\b`)
	pgBlob         = regexp.MustCompile(`\bBLOB\b`)
	pgText         = regexp.MustCompile(`\bTEXT\b`)
	pgWithoutRowid = regexp.MustCompile(`\)\s*WITHOUT ROWID`)
)

// openPostgres opens the store in the PostgreSQL database of the URL
// dsn, creating and migrating the schema as Open does for a file. The
// role needs to be able to create tables and a collation in the
// database (owning it is simplest).
func openPostgres(dsn string) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the URL, password and all.
		return nil, fmt.Errorf("open list store %s: not a valid PostgreSQL URL", Describe(dsn))
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	// A writer waits for another's write transaction as long as a
	// SQLite writer would (busyTimeout), rather than failing at once.
	if _, ok := cfg.RuntimeParams["lock_timeout"]; !ok {
		cfg.RuntimeParams["lock_timeout"] = fmt.Sprint(busyTimeout.Milliseconds())
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	db := sql.OpenDB(rebindConnector{stdlib.GetConnector(*cfg)})
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(time.Minute)
	s := &Store{db: db, d: &pgDialect{db: db}, now: time.Now, target: Describe(dsn)}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open list store %s: %w", s.target, err)
	}
	return s, nil
}

// pgDialect is the shared store.
type pgDialect struct {
	db *sql.DB
}

func (*pgDialect) name() string           { return "postgres" }
func (*pgDialect) ddl(step string) string { return pgDDL(step) }

func (*pgDialect) lockSchema(ctx context.Context, tx *sql.Tx) (int, error) {
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", int64(schemaLock)); err != nil {
		return 0, fmt.Errorf("lock schema: %w", err)
	}
	// The collation lists.address uses: equal regardless of case, as
	// SQLite's NOCASE, which a unique index honours. ICU is in every
	// common PostgreSQL build (Debian's included).
	for _, q := range []string{
		`CREATE COLLATION IF NOT EXISTS fanmail_nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`,
		`CREATE TABLE IF NOT EXISTS fanmail_schema (
			one     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
			version BIGINT NOT NULL,
			changes BIGINT NOT NULL
		)`,
		`INSERT INTO fanmail_schema(version, changes) VALUES(0, 0) ON CONFLICT DO NOTHING`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return 0, fmt.Errorf("prepare schema: %w", err)
		}
	}
	var v int
	if err := tx.QueryRowContext(ctx, "SELECT version FROM fanmail_schema").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func (*pgDialect) setSchemaVersion(ctx context.Context, tx *sql.Tx, v int) error {
	if _, err := tx.ExecContext(ctx, "UPDATE fanmail_schema SET version = ?, changes = changes + 1", v); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	return nil
}

func (*pgDialect) beginWrite(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, "UPDATE fanmail_schema SET changes = changes + 1"); err != nil {
		return fmt.Errorf("take the write lock: %w", err)
	}
	return nil
}

func (d *pgDialect) version(ctx context.Context) (int64, error) {
	var v int64
	err := d.db.QueryRowContext(ctx, "SELECT changes FROM fanmail_schema").Scan(&v)
	return v, err
}

func (d *pgDialect) snapshot(ctx context.Context) (*sql.Tx, error) {
	return d.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
}

func (*pgDialect) tables(ctx context.Context, q querier) ([]string, error) {
	return collect(ctx, q, "read table names", scanString, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name != 'fanmail_schema'`)
}

// identityColumns returns the tables with an identity column, and the
// column.
func identityColumns(ctx context.Context, q querier) ([][2]string, error) {
	return collect(ctx, q, "find identity columns", func(scan func(...any) error) ([2]string, error) {
		var tc [2]string
		err := scan(&tc[0], &tc[1])
		return tc, err
	}, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND is_identity = 'YES'`)
}

func (*pgDialect) idFloors(ctx context.Context, q querier) (map[string]int64, error) {
	cols, err := identityColumns(ctx, q)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, tc := range cols {
		var last sql.NullInt64 // NULL: the sequence never handed out an id
		if err := q.QueryRowContext(ctx, "SELECT pg_sequence_last_value(pg_get_serial_sequence(?, ?)::regclass)", tc[0], tc[1]).Scan(&last); err != nil {
			return nil, fmt.Errorf("read the id sequence of %s: %w", tc[0], err)
		}
		if last.Valid {
			out[tc[0]] = last.Int64 + 1
		}
	}
	return out, nil
}

// afterCopy sets every identity column's sequence past the highest id in
// its table, since the copy inserted the ids itself, and at least to the
// floor.
func (*pgDialect) afterCopy(ctx context.Context, tx *sql.Tx, floors map[string]int64) error {
	cols, err := identityColumns(ctx, tx)
	if err != nil {
		return err
	}
	for _, tc := range cols {
		// The names come from the catalogue; quoted all the same.
		t, c := pgx.Identifier{tc[0]}.Sanitize(), pgx.Identifier{tc[1]}.Sanitize()
		q := fmt.Sprintf(`SELECT setval(pg_get_serial_sequence(?, ?),
			GREATEST(COALESCE((SELECT max(%s) FROM %s), 0) + 1, ?), false)`, c, t)
		if _, err := tx.ExecContext(ctx, q, tc[0], tc[1], max(floors[tc[0]], 1)); err != nil {
			return fmt.Errorf("advance the ids of %s: %w", tc[0], err)
		}
	}
	return nil
}

func (*pgDialect) close() error { return nil }
