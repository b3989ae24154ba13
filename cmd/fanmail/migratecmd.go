package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"fanmail/lists"
)

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "copy the list store into another database (SQLite to PostgreSQL, or back)",
		Description: "Copies everything the list store keeps (lists, members, settings, moderators, held posts " +
			"with their bodies, tokens) from --from into --to, which must be empty, in one transaction, " +
			"and verifies the row count of every table on both sides before committing. " +
			"Each of --from and --to is sqlite:PATH (or a plain PATH) or a postgres:// URL; " +
			"put the password in PGPASSWORD or ~/.pgpass rather than on the command line. " +
			"Stop the servers using --from first; then set [lists] database to --to in the " +
			"config of every node.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Required: true, Usage: "the store to copy: sqlite:`PATH` or postgres://..."},
			&cli.StringFlag{Name: "to", Required: true, Usage: "the new, empty store: postgres://... or sqlite:`PATH`"},
		},
		Action: migrate,
	}
}

func migrate(c *cli.Context) error {
	from, to := c.String("from"), c.String("to")
	if storeKey(from) == storeKey(to) {
		return fmt.Errorf("migrate: --from and --to are the same store (%s)", lists.Describe(from))
	}
	// A missing source file would be created empty by Open and copied
	// as nothing: refuse it by name instead.
	if path, ok := lists.SQLiteFile(from); ok {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("migrate: --from %s: no such file (the list store is DATA_DIR/lists.db)", path)
		} else if err != nil {
			return fmt.Errorf("migrate: --from %s: %w", path, err)
		}
	}
	src, err := lists.Open(from)
	if err != nil {
		return fmt.Errorf("migrate: --from: %w", err)
	}
	defer src.Close()
	dst, err := lists.Open(to)
	if err != nil {
		return fmt.Errorf("migrate: --to: %w", err)
	}
	defer dst.Close()
	start := time.Now()
	w := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', tabwriter.AlignRight)
	var total int64
	_, err = lists.Copy(c.Context, src, dst, func(tc lists.TableCount) {
		fmt.Fprintf(w, "%s\t%d\t\n", tc.Table, tc.Rows)
		total += tc.Rows
	})
	if err != nil {
		return fmt.Errorf("migrate %s to %s: %w", src, dst, err)
	}
	w.Flush()
	fmt.Fprintf(c.App.Writer, "copied %d rows from %s to %s in %s; every table's count verified\n",
		total, src, dst, time.Since(start).Round(time.Millisecond))
	return nil
}

// storeKey is what tells two store arguments apart: sqlite: and a
// plain path name the same file.
func storeKey(target string) string {
	if file, ok := lists.SQLiteFile(target); ok {
		return file
	}
	return target
}
