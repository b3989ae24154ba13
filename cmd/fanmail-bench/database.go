package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"fanmail/internal/pgtest"
	"fanmail/lists"
)

// postgresTemp is the --database value that starts a throwaway cluster.
const postgresTemp = "postgres-temp"

// benchDatabase returns the lists.database for fanmail's config ("" for
// the SQLite default), the PID of its server when the tool started it
// (0 otherwise), and a function that releases it: for postgres-temp, a
// durable cluster (fsync on, as in production), stopped and removed
// afterwards.
func benchDatabase(ctx context.Context, o *options) (string, int, func(), error) {
	switch {
	case o.database == "":
		return "", 0, func() {}, nil
	case o.database == postgresTemp:
		bin, err := pgtest.FindBinaries()
		if err != nil {
			return "", 0, nil, fmt.Errorf("--database %s: %w", postgresTemp, err)
		}
		c, err := pgtest.Launch(bin, pgtest.Options{Durable: true})
		if err != nil {
			return "", 0, nil, fmt.Errorf("--database %s: %w", postgresTemp, err)
		}
		url, err := c.CreateDatabase(ctx)
		if err == nil {
			var pid int
			if pid, err = c.PID(); err == nil {
				o.log.Info("PostgreSQL cluster started", "url", url, "bin", bin, "pid", pid)
				return url, pid, func() {
					if err := c.Stop(); err != nil {
						o.log.Warn("stop PostgreSQL cluster", "err", err)
					}
				}, nil
			}
		}
		c.Stop()
		return "", 0, nil, err
	case lists.IsPostgres(o.database):
		return o.database, 0, func() {}, nil
	}
	return "", 0, nil, fmt.Errorf("--database %q: want a postgres:// URL or %s", o.database, postgresTemp)
}

// describeDatabase names the store for the report.
func describeDatabase(flag, url string) string {
	switch {
	case url == "":
		return "SQLite (lists.db in the work directory)"
	case flag == postgresTemp:
		v := "PostgreSQL"
		if bin, err := pgtest.FindBinaries(); err == nil {
			if out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output(); err == nil {
				v = strings.TrimSpace(string(out))
			}
		}
		return v + ", throwaway cluster on loopback, fsync on"
	}
	return lists.Describe(url)
}
