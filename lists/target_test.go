package lists

import "testing"

// TestStoreTargets: a store target is a PostgreSQL URL or a SQLite file,
// written plain or as sqlite:PATH; Describe hides a URL's password.
func TestStoreTargets(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		target, file, described string
		sqlite                  bool
	}{
		{"/var/lib/fanmail/lists.db", "/var/lib/fanmail/lists.db", "/var/lib/fanmail/lists.db", true},
		{"sqlite:data/lists.db", "data/lists.db", "sqlite:data/lists.db", true},
		{"postgres://fanmail:secret@db.example/lists", "", "postgres://fanmail:xxxxx@db.example/lists", false},
		{"postgresql://db.example/lists?sslmode=require", "", "postgresql://db.example/lists?sslmode=require", false},
	} {
		file, sqlite := SQLiteFile(tt.target)
		if file != tt.file || sqlite != tt.sqlite || IsPostgres(tt.target) == tt.sqlite {
			t.Errorf("%s: SQLiteFile = %q, %v; IsPostgres = %v", tt.target, file, sqlite, IsPostgres(tt.target))
		}
		if got := Describe(tt.target); got != tt.described {
			t.Errorf("Describe(%s) = %q, want %q", tt.target, got, tt.described)
		}
	}
}
