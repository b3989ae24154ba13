package config

import (
	"net/url"
	"path/filepath"
	"strings"

	"fanmail/lists"
)

// Lists is where the list store lives ([lists]).
type Lists struct {
	// Database is the store: "" (the default) is lists.db in data_dir; a
	// path or sqlite:PATH is another SQLite file; a postgres:// URL is a
	// PostgreSQL database that several nodes may share. Keep a password
	// out of the file: PostgreSQL's PGPASSWORD or ~/.pgpass serve.
	Database string `toml:"database"`
}

// Node names this fanmail among several that share one list store
// ([node]).
type Node struct {
	// Name goes into every queue ID this node makes (and so into its log
	// lines and the claims it takes on held posts); default: hostname.
	Name string `toml:"name"`
}

// maxNodeName bounds [node] name: it is in every queue ID.
const maxNodeName = 63

func (c *Config) validateCluster(bad func(key, format string, args ...any)) {
	if db := c.Lists.Database; lists.IsPostgres(db) {
		if u, err := url.Parse(db); err != nil || u.Host == "" && u.Query().Get("host") == "" {
			bad("lists.database", "%q is not a PostgreSQL URL such as \"postgres://fanmail@db.example.org/fanmail\"", lists.Describe(db))
		}
	} else if strings.Contains(db, "://") {
		bad("lists.database", "%q: only postgres:// URLs, or the path of a SQLite file, are list stores", lists.Describe(db))
	}
	n := c.Node.Name
	switch {
	case n == "":
		// Only without a hostname, which is reported as such.
	case len(n) > maxNodeName:
		bad("node.name", "%q is %d characters; at most %d (it is in every queue ID)", n, len(n), maxNodeName)
	case strings.Trim(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != "":
		bad("node.name", "%q: use letters, digits, '.' and '-' only (it is in every queue ID)", n)
	}
}

// ListsDB is the list store Open takes: lists.database, or lists.db in
// data_dir.
func (c *Config) ListsDB() string {
	if c.Lists.Database != "" {
		return c.Lists.Database
	}
	return filepath.Join(c.DataDir, "lists.db")
}

// SharedLists reports whether the list store is a PostgreSQL database,
// which other nodes may share.
func (c *Config) SharedLists() bool { return lists.IsPostgres(c.ListsDB()) }
