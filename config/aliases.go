package config

import (
	"context"
	"log/slog"
	"strings"

	"fanmail/address"
	"fanmail/aliases"
	"fanmail/expander"
	"fanmail/lists"
)

// Aliases configures sendmail-style aliases files.
type Aliases struct {
	Files []string `toml:"files"` // aliases(5) files, read in order; the only files whose |program and /file targets are honoured
	// LocalDomains (default: hostname) are, with the hostname and
	// localhost, the domains whose addresses are looked up as aliases
	// (sendmail's class w, aliases.ClassW); the first qualifies owner
	// addresses.
	LocalDomains     []string `toml:"local_domains"`
	MergeDuplicates  bool     `toml:"merge_duplicates"`   // join a name defined twice (sendmail -A) instead of last-wins
	AllowIncludeExec bool     `toml:"allow_include_exec"` // honour |program and /file in :include: files
	ProgramUser      string   `toml:"program_user"`       // user |program and /file targets run as; required when fanmail runs as root
	ProgramTimeout   Duration `toml:"program_timeout"`    // kill a |program after this and defer
	// BounceAddress is the envelope sender of mail forwarded through an
	// alias without owner-NAME, so its bounces never go to the poster;
	// default MAILER-DAEMON@hostname (expander.MailerDaemon).
	BounceAddress string `toml:"bounce_address"`
}

// validateAliases checks the aliases section.
func (c *Config) validateAliases(bad func(key, format string, args ...any)) {
	a := c.Aliases
	for _, d := range a.LocalDomains {
		if _, err := address.Parse("postmaster@" + d); err != nil {
			bad("aliases.local_domains", "%q is not a domain: %v", d, err)
		}
	}
	for _, f := range a.Files {
		if f == "" {
			bad("aliases.files", "empty file name")
		}
	}
	if b := a.BounceAddress; b != "" {
		if _, err := address.Parse(b); err != nil || strings.ContainsAny(b, "<>") {
			bad("aliases.bounce_address", "%q is not an address such as \"postmaster@example.org\"", b)
		}
	}
	if a.ProgramTimeout <= 0 {
		bad("aliases.program_timeout", "must be a positive duration such as \"30s\" or \"5m\"")
	}
}

// AliasConfig maps the [aliases] settings onto the expander's; ls gives
// the list store's lists, so a load can report the lists an alias hides.
func (c *Config) AliasConfig(log *slog.Logger, ls func(context.Context) ([]lists.List, error)) expander.AliasConfig {
	a := c.Aliases
	return expander.AliasConfig{Files: a.Files, LocalDomains: aliases.ClassW(c.Hostname, a.LocalDomains...), Merge: a.MergeDuplicates,
		AllowIncludeExec: a.AllowIncludeExec, BounceAddress: a.BounceAddress, Logger: log, Lists: ls}
}
