// Package lists owns the store of lists and members. It runs on one of
// two databases behind the same API: a SQLite file (lists.db, pure Go via
// modernc.org/sqlite), the default, which the server reads while the
// fanmail CLI writes, each from its own process; or a PostgreSQL
// database (postgres.go) that several fanmail nodes share. The expander
// asks it for a list's members and uses Version to know when its cache
// is stale.
//
// Beside members it keeps what decides who may post and what becomes of
// a post: each list's settings (settings.go: one table defines every key,
// its default and what it accepts), its moderators, the posts that wait
// for a moderator or for their distribution, body and all (posts.go,
// decide.go), the single-use tokens of commands sent by mail
// (tokens.go), and each server's start, heartbeat and clean stop
// (nodes.go). Whatever one process decides there (the CLI approving a
// post, the server taking a moderator's reply) every other sees.
//
// Every query is written once, in SQL both databases accept; dialect.go
// holds what differs (the migrations' types, the schema version, locking,
// Version) and rebind.go turns ? placeholders into PostgreSQL's. So a new
// table is a migration step written for SQLite (pgDDL translates it) and
// a name in tableOrder; its queries avoid what only SQLite has
// (LastInsertId: use INSERT ... RETURNING id; INSERT OR REPLACE: use ON
// CONFLICT; WHERE 1: use WHERE TRUE; scalar max(a, b): use CASE), and
// its tests join the conformance suite, which runs them on both. Writes
// go through Store.write, which takes the store's single write lock up
// front: in SQLite, WAL mode lets readers run while one writer commits,
// busy_timeout makes a second writer wait instead of failing, and BEGIN
// IMMEDIATE takes the lock at the start rather than failing on upgrade;
// in PostgreSQL the first statement updates the one row of
// fanmail_schema, with lock_timeout as the wait.
package lists

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrNoList means the list does not exist.
var ErrNoList = errors.New("no such list")

// ErrListExists means a list with that address (compared
// case-insensitively) already exists.
var ErrListExists = errors.New("list already exists")

// busyTimeout is how long a writer waits for another process's write
// transaction before giving up. A CLI import of a million members holds
// the write lock for seconds, and the server writes to the store too
// (held posts, bounces): a wait well past that is better than an error.
const busyTimeout = 30 * time.Second

// migrations[i] brings the schema from user_version i to i+1. Append only:
// a released step is never edited.
var migrations = []string{
	`CREATE TABLE lists (
		id      INTEGER PRIMARY KEY,
		address TEXT NOT NULL UNIQUE COLLATE NOCASE,
		owner   TEXT NOT NULL DEFAULT '',
		created INTEGER NOT NULL -- Unix seconds
	);
	CREATE TABLE members (
		list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
		address TEXT NOT NULL, -- address.Normalize form
		domain  TEXT NOT NULL, -- lowercase domain of address
		PRIMARY KEY (list_id, address)
	) WITHOUT ROWID;
	-- Members are read in (domain, address) order, which is how the
	-- expander cuts envelopes.
	CREATE INDEX members_by_domain ON members(list_id, domain, address);`,

	// Posting policy, moderation and the tokens of mail commands.
	`CREATE TABLE settings (
		list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
		key     TEXT NOT NULL,
		value   TEXT NOT NULL, -- only settings that differ from the default
		PRIMARY KEY (list_id, key)
	) WITHOUT ROWID;
	CREATE TABLE moderators (
		list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
		address TEXT NOT NULL, -- address.Normalize form
		PRIMARY KEY (list_id, address)
	) WITHOUT ROWID;
	-- Posts the server took (250) and has not distributed: held for a
	-- moderator, accepted and waiting (a DMARC lookup that failed, or
	-- approved and not yet out), or rejected with the poster's notice
	-- not yet sent.
	CREATE TABLE posts (
		id          INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: moderators name posts by it
		list_id     INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
		state       TEXT NOT NULL,    -- held, accepted, rejected
		reason      TEXT NOT NULL,    -- why it waits
		queue_id    TEXT NOT NULL,    -- the ID the SMTP client was given
		received    INTEGER NOT NULL, -- Unix nanoseconds
		sender      TEXT NOT NULL,    -- MAIL FROM; '' is the null sender
		from_addr   TEXT NOT NULL,    -- the From: address, '' if none parsed
		subject     TEXT NOT NULL,
		helo        TEXT NOT NULL,
		remote_addr TEXT NOT NULL,
		size        INTEGER NOT NULL,
		expires     INTEGER NOT NULL, -- Unix seconds
		next_try    INTEGER NOT NULL DEFAULT 0, -- accepted: not before (Unix seconds)
		notified    INTEGER NOT NULL DEFAULT 0, -- held: the moderators were notified
		decided_by  TEXT NOT NULL DEFAULT '',
		note        TEXT NOT NULL DEFAULT '',   -- rejected: the reason the poster is given
		claim       TEXT NOT NULL DEFAULT ''    -- queue ID of the message being made from it; '' unclaimed
	);
	CREATE INDEX posts_by_list ON posts(list_id, id);
	CREATE TABLE post_chunks (
		post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
		seq     INTEGER NOT NULL,
		data    BLOB NOT NULL,
		PRIMARY KEY (post_id, seq)
	) WITHOUT ROWID;
	-- Single-use tokens of mail commands. The token itself is never
	-- stored: a copy of the database lets nobody act.
	CREATE TABLE tokens (
		hash     TEXT PRIMARY KEY, -- hex SHA-256 of the token
		purpose  TEXT NOT NULL,    -- moderate
		list_id  INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
		address  TEXT NOT NULL,    -- who it was sent to
		post_id  INTEGER NOT NULL DEFAULT 0, -- moderate: the post; kept after the post is gone
		created  INTEGER NOT NULL, -- Unix seconds
		expires  INTEGER NOT NULL,
		used     INTEGER NOT NULL DEFAULT 0, -- Unix seconds; 0 unused
		action   TEXT NOT NULL DEFAULT '',   -- what it, or the decision it lost to, did
		used_by  TEXT NOT NULL DEFAULT ''
	) WITHOUT ROWID;
	CREATE INDEX tokens_by_post ON tokens(post_id);`,

	// Commands by mail and bounce processing (requests.go).
	migrationMail,

	// A held post keeps whether it came with SMTPUTF8, so its approved
	// copy asks the next servers for it as the original would have.
	`ALTER TABLE posts ADD COLUMN smtputf8 INTEGER NOT NULL DEFAULT 0;`,

	// Each server's sign of life (nodes.go), so that releasing the
	// claims of a node that still runs can be refused.
	migrationNodes,
}

// tableOrder is every table of the schema, each after the tables it
// references: the order Copy (fanmail migrate) copies them in. A
// migration that adds a table adds it here too (Copy refuses a store
// with a table it does not list).
var tableOrder = []string{"lists", "members", "settings", "moderators", "posts", "post_chunks", "tokens",
	"requests", "answers", "member_bounces", "bounce_events", "nodes"}

// Store is an open list store. It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	d      dialect
	now    func() time.Time
	target string // for messages: the file, or the URL without its password
}

// Open opens the store at target: a postgres:// or postgresql:// URL
// (see openPostgres), or the path of a SQLite file, optionally written
// sqlite:PATH. It creates what is missing (the file, mode 0600, and the
// schema) and migrates an older schema; a schema newer than this fanmail
// knows is an error.
func Open(target string) (*Store, error) {
	if file, ok := SQLiteFile(target); ok {
		return openSQLite(file)
	}
	return openPostgres(target)
}

func openSQLite(path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open list store %s: %w", path, err)
	}
	if err := secureFiles(abs); err != nil {
		return nil, fmt.Errorf("open list store: %w", err)
	}
	// A file: URI so that '?' or '#' in the path cannot be taken for
	// parameters.
	dsn := "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + url.Values{
		"_busy_timeout": {fmt.Sprint(busyTimeout.Milliseconds())},
		"_journal_mode": {"WAL"},
		// Every commit is on disk before it returns: a held post is mail
		// the server has answered 250 for, and the store's writes are few.
		"_synchronous":  {"FULL"},
		"_foreign_keys": {"on"},
		"_txlock":       {"immediate"},
	}.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open list store %s: %w", path, err)
	}
	d := &sqliteDialect{db: db}
	s := &Store{db: db, d: d, now: time.Now, target: path}
	ctx := context.Background()
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open list store %s: %w", path, err)
	}
	if d.versionConn, err = db.Conn(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open list store %s: %w", path, err)
	}
	return s, nil
}

// String names the store: its file, or its URL without the password.
func (s *Store) String() string { return s.target }

// Kind is "sqlite" or "postgres".
func (s *Store) Kind() string { return s.d.name() }

// Close closes the store.
func (s *Store) Close() error {
	return errors.Join(s.d.close(), s.db.Close())
}

// SchemaVersion is the schema version this fanmail creates and
// understands: the number of migration steps.
func SchemaVersion() int { return len(migrations) }

// migrate applies the missing schema steps in one transaction that
// excludes other processes doing the same, so two processes opening a
// new database at once do not both create it.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback()
	version, err := s.d.lockSchema(ctx, tx)
	if err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: the database is at schema version %d, this fanmail knows versions up to %d; upgrade fanmail on this machine (every node sharing the database needs the newer one)",
			ErrSchemaNewer, version, len(migrations))
	}
	if version == len(migrations) {
		return nil
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, s.d.ddl(migrations[i])); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", i+1, err)
		}
	}
	if err := s.d.setSchemaVersion(ctx, tx, len(migrations)); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migration: %w", err)
	}
	return nil
}

// ErrSchemaNewer means the database was created or migrated by a newer
// fanmail than this one.
var ErrSchemaNewer = errors.New("list store schema is newer than this fanmail")

// Version returns a value that changes whenever any process, this one
// included, commits a change to the store. It is cheap (no table is
// read), so callers may check it on every use of a cache.
func (s *Store) Version(ctx context.Context) (int64, error) {
	v, err := s.d.version(ctx)
	if err != nil {
		return 0, fmt.Errorf("list store version: %w", err)
	}
	return v, nil
}

// write runs fn in a write transaction, which holds the store's write
// lock from its start (see the package doc), and commits it if fn
// succeeds.
func (s *Store) write(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.writeOn(ctx, s.db, fn)
}

// txBeginner is what *sql.DB and *sql.Conn offer to begin a transaction.
type txBeginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// writeOn is write with the transaction begun on b: the store's pool,
// or one connection of it that the caller needs the transaction on (the
// PostgreSQL import, whose COPY goes through that connection).
func (s *Store) writeOn(ctx context.Context, b txBeginner, fn func(*sql.Tx) error) error {
	tx, err := b.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := s.d.beginWrite(ctx, tx); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// queryer is what both *sql.DB and *sql.Tx offer.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// listID returns the id of the list whose address is list, compared
// case-insensitively after normalization.
func listID(ctx context.Context, q queryer, list string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, "SELECT id FROM lists WHERE address = ?", lookupKey(list)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("list %s: %w", list, ErrNoList)
	}
	if err != nil {
		return 0, fmt.Errorf("look up list %s: %w", list, err)
	}
	return id, nil
}
