package lists

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Every fanmail serve sharing the store says it is alive: it records its
// [node] name when it starts, the time again every few seconds (its
// heartbeat, package moderation), and that it stopped when it stops
// cleanly. fanmail mod release reads it to refuse giving up the claims
// of a node that still runs.
//
// These writes do not go through Store.write: each is one statement,
// atomic on its own, that reads nothing first, so it needs no write
// lock; and on PostgreSQL, not counting them as changes keeps Version
// still, so that a heartbeat does not empty every node's caches. (On
// SQLite, Version is the file's data_version, which every commit moves:
// one node's heartbeat costs its expander one reload of its caches per
// heartbeat.)

// HeartbeatEvery is how often a running server writes its heartbeat.
const HeartbeatEvery = 10 * time.Second

// GoneAfter is how long after its last heartbeat a node that did not
// stop cleanly counts as gone: three heartbeats missed, so that one
// slow or failed write (a store busy for a while) does not make a live
// node look gone, plus 15 seconds for the nodes' clocks to differ (each
// writes its own time; NTP keeps them within far less) and for the
// write in flight.
const GoneAfter = 3*HeartbeatEvery + 15*time.Second

const migrationNodes = `CREATE TABLE nodes (
		name      TEXT PRIMARY KEY,     -- [node] name
		version   TEXT NOT NULL,        -- fanmail version of its last start
		started   INTEGER NOT NULL,     -- Unix seconds of its last start
		last_seen INTEGER NOT NULL,     -- Unix seconds of its last heartbeat, start or stop
		stopped   INTEGER NOT NULL DEFAULT 0 -- 1: it stopped cleanly at last_seen
	) WITHOUT ROWID;`

// Node is what the store knows of one node's life.
type Node struct {
	Name     string
	Version  string
	Started  time.Time // its last start
	LastSeen time.Time // its last heartbeat, or its clean stop
	Stopped  bool      // it stopped cleanly at LastSeen
}

// NodeStarted records that node started at now, running version.
func (s *Store) NodeStarted(ctx context.Context, node, version string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO nodes(name, version, started, last_seen, stopped) VALUES(?, ?, ?, ?, 0)
		ON CONFLICT(name) DO UPDATE SET version = excluded.version, started = excluded.started,
		last_seen = excluded.last_seen, stopped = 0`, node, version, now.Unix(), now.Unix())
	if err != nil {
		return fmt.Errorf("record the start of node %s: %w", node, err)
	}
	return nil
}

// Heartbeat records that node is running at now. A node the store does
// not know yet (its start was written to another store, which fanmail
// migrate copied from before it) is recorded as started now.
func (s *Store) Heartbeat(ctx context.Context, node string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO nodes(name, version, started, last_seen, stopped) VALUES(?, '', ?, ?, 0)
		ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen, stopped = 0`, node, now.Unix(), now.Unix())
	if err != nil {
		return fmt.Errorf("heartbeat of node %s: %w", node, err)
	}
	return nil
}

// NodeStopped records that node stopped cleanly at now: it takes no
// more claims.
func (s *Store) NodeStopped(ctx context.Context, node string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, "UPDATE nodes SET last_seen = ?, stopped = 1 WHERE name = ?", now.Unix(), node)
	if err != nil {
		return fmt.Errorf("record the stop of node %s: %w", node, err)
	}
	return nil
}

// Nodes returns every node that ever reported to the store, by name.
func (s *Store) Nodes(ctx context.Context) ([]Node, error) {
	return collect(ctx, s.db, "read nodes", scanNode,
		"SELECT name, version, started, last_seen, stopped FROM nodes ORDER BY name")
}

// ErrNoNode means no node of that name ever reported to the store.
var ErrNoNode = errors.New("no node of that name ever reported to this list store")

// FindNode returns what the store knows of node, or ErrNoNode.
func (s *Store) FindNode(ctx context.Context, node string) (Node, error) {
	row := s.db.QueryRowContext(ctx, "SELECT name, version, started, last_seen, stopped FROM nodes WHERE name = ?", node)
	n, err := scanNode(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, fmt.Errorf("node %s: %w", node, ErrNoNode)
	}
	if err != nil {
		return Node{}, fmt.Errorf("read node %s: %w", node, err)
	}
	return n, nil
}

func scanNode(scan func(...any) error) (Node, error) {
	var n Node
	var started, seen, stopped int64
	if err := scan(&n.Name, &n.Version, &started, &seen, &stopped); err != nil {
		return Node{}, err
	}
	n.Started, n.LastSeen, n.Stopped = time.Unix(started, 0), time.Unix(seen, 0), stopped != 0
	return n, nil
}

// Alive reports whether n may be running at now: it has not stopped
// cleanly and its last heartbeat is less than GoneAfter before now. A
// heartbeat from a clock ahead of now counts as recent.
func (n Node) Alive(now time.Time) bool {
	return !n.Stopped && now.Sub(n.LastSeen) < GoneAfter
}
