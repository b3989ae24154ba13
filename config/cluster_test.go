package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestListsAndNode: the store defaults to lists.db in data_dir and
// follows [lists] database; the node name defaults to the hostname; a
// URL's password never reaches the printed config.
func TestListsAndNode(t *testing.T) {
	tests := []struct {
		text, db, node string
		shared         bool
	}{
		{"hostname = \"mx1.example.org\"\ndata_dir = \"/d\"", filepath.Join("/d", "lists.db"), "mx1.example.org", false},
		{"hostname = \"h\"\n[lists]\ndatabase = \"sqlite:/other/lists.db\"\n[node]\nname = \"mx2\"", "sqlite:/other/lists.db", "mx2", false},
		{"hostname = \"h\"\n[lists]\ndatabase = \"postgres://fanmail:secret@db.example.org/fanmail\"", "postgres://fanmail:secret@db.example.org/fanmail", "h", true},
	}
	for _, tt := range tests {
		cfg, err := load(t, tt.text)
		if err != nil {
			t.Fatalf("%q: %v", tt.text, err)
		}
		if got := cfg.ListsDB(); got != tt.db {
			t.Errorf("%q: ListsDB() = %q, want %q", tt.text, got, tt.db)
		}
		if cfg.Node.Name != tt.node {
			t.Errorf("%q: node name %q, want %q", tt.text, cfg.Node.Name, tt.node)
		}
		if cfg.SharedLists() != tt.shared {
			t.Errorf("%q: SharedLists() = %v", tt.text, cfg.SharedLists())
		}
		if out := cfg.String(); strings.Contains(out, "secret") {
			t.Errorf("%q: the printed config shows the password:\n%s", tt.text, out)
		}
	}
}
