package lists

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// dbMode is the mode lists.db is created with: members' addresses are
// personal data, for the server's user alone. SQLite creates the -wal
// and -shm files with the mode (and, as root, the owner) of the database
// file, so they follow.
const dbMode = 0o600

// secureFiles creates the database file with dbMode if it is missing,
// before SQLite would create it world-readable (0644), and takes the
// other users' bits off an existing one and its -wal, -shm and -journal
// files; group bits an administrator gave are left alone.
func secureFiles(db string) error {
	f, err := os.OpenFile(db, os.O_WRONLY|os.O_CREATE|os.O_EXCL, dbMode)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return fmt.Errorf("create %s: %w", db, err)
		}
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("create %s: %w", db, err)
	}
	for _, p := range []string{db, db + "-wal", db + "-shm", db + "-journal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("check mode of %s: %w", p, err)
		}
		if perm := fi.Mode().Perm(); perm&0o007 != 0 {
			if err := os.Chmod(p, perm&^0o007); err != nil {
				return fmt.Errorf("%s is open to other users (mode %04o) and cannot be changed: %w; run chmod o-rwx %s", p, perm, err, p)
			}
		}
	}
	return nil
}
