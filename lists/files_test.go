package lists

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// lists.db and the files SQLite keeps beside it are the server's user's
// alone; an older database open to others is closed to them.
func TestFileModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		existing os.FileMode // 0: no file before Open
		want     os.FileMode
	}{
		{"created", 0, 0o600},
		{"world-readable from an older fanmail", 0o644, 0o640},
		{"group access an administrator gave", 0o660, 0o660},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := filepath.Join(t.TempDir(), "lists.db")
			if tt.existing != 0 {
				if err := os.WriteFile(db, nil, tt.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(db, tt.existing); err != nil { // whatever the umask
					t.Fatal(err)
				}
			}
			s, err := Open(db)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// A write, so the WAL and its index exist.
			if err := s.CreateList(context.Background(), "news@example.org", ""); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{db, db + "-wal", db + "-shm"} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != tt.want {
					t.Errorf("%s: mode %04o, want %04o", filepath.Base(p), got, tt.want)
				}
			}
		})
	}
}

// Files a crash left beside an older database are closed to others too.
func TestSecureFilesLeftovers(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "lists.db")
	for _, p := range []string{db, db + "-wal", db + "-shm", db + "-journal"} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o646); err != nil {
			t.Fatal(err)
		}
	}
	if err := secureFiles(db); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{db, db + "-wal", db + "-shm", db + "-journal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o640 {
			t.Errorf("%s: mode %04o, want 0640", filepath.Base(p), got)
		}
	}
}
