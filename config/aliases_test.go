package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAliasesSection(t *testing.T) {
	tests := []struct {
		name, toml string
		wantErr    string
		domains    []string
	}{
		{"defaults to hostname", `hostname = "Mail.Example.ORG"`, "", []string{"mail.example.org"}},
		{"explicit", "hostname = \"h.example\"\n[aliases]\nlocal_domains = [\"Example.org\", \"lists.example.org\"]\nfiles = [\"/etc/aliases\"]", "", []string{"example.org", "lists.example.org"}},
		{"bad domain", "hostname = \"h.example\"\n[aliases]\nlocal_domains = [\"exa mple.org\"]", "aliases.local_domains", nil},
		{"bad timeout", "hostname = \"h.example\"\n[aliases]\nprogram_timeout = \"0s\"", "aliases.program_timeout", nil},
		{"empty file", "hostname = \"h.example\"\n[aliases]\nfiles = [\"\"]", "aliases.files", nil},
		{"unknown key", "hostname = \"h.example\"\n[aliases]\nfile = \"/etc/aliases\"", "aliases.file: unknown key", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(p, []byte(tc.toml), 0o644)
			cfg, err := Load(p)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if tc.domains != nil && strings.Join(cfg.Aliases.LocalDomains, ",") != strings.Join(tc.domains, ",") {
				t.Errorf("local_domains %v, want %v", cfg.Aliases.LocalDomains, tc.domains)
			}
		})
	}
}
