package config

import "fanmail/ingress"

// SMTP is the SMTP server's limits on each session ([smtp]); the caps on
// sessions themselves are in [load]. Each maps onto ingress.Config, whose
// DefaultConfig holds the defaults.
type SMTP struct {
	MaxRecipients      int      `toml:"max_recipients"`      // RCPTs per transaction, rejected ones included; 452 4.5.3 beyond
	RecipientOvershoot int      `toml:"recipient_overshoot"` // 452s past max_recipients before each counts as an error
	MaxErrors          int      `toml:"max_errors"`          // rejected commands before 421 4.7.0 and disconnect
	MaxJunkCommands    int      `toml:"max_junk_commands"`   // NOOP, RSET, VRFY, EHLO... before each counts as an error
	CommandTimeout     Duration `toml:"command_timeout"`     // idle time allowed for one command
	SessionTimeout     Duration `toml:"session_timeout"`     // a session's whole lifetime
	MinFreeSpace       Size     `toml:"min_free_space"`      // below this on the spool's disks: 452 4.3.1; 0 = off
}

// smtpKeys shows ingress's defaults under their keys.
func smtpKeys(in ingress.Config) SMTP {
	return SMTP{
		MaxRecipients:      in.MaxRecipients,
		RecipientOvershoot: in.RecipientOvershoot,
		MaxErrors:          in.MaxErrors,
		MaxJunkCommands:    in.MaxJunkCommands,
		CommandTimeout:     Duration(in.ReadTimeout),
		SessionTimeout:     Duration(in.SessionTimeout),
		MinFreeSpace:       Size(in.Load.MinFreeSpace),
	}
}

func (s SMTP) validate(bad func(key, format string, args ...any)) {
	// RFC 5321 §4.5.3.1.8: a server must take at least 100 recipients.
	if s.MaxRecipients < 100 {
		bad("smtp.max_recipients", "%d is below the 100 recipients RFC 5321 requires a server to take", s.MaxRecipients)
	}
	atLeast(bad, 1, "must be at least 1; no session goes unbounded", map[string]int{
		"smtp.recipient_overshoot": s.RecipientOvershoot,
		"smtp.max_errors":          s.MaxErrors,
		"smtp.max_junk_commands":   s.MaxJunkCommands,
	})
	positive(bad, "must be a positive duration such as \"30s\" or \"5m\"", map[string]Duration{
		"smtp.command_timeout": s.CommandTimeout,
		"smtp.session_timeout": s.SessionTimeout,
	})
	if s.CommandTimeout > 0 && s.SessionTimeout > 0 && s.SessionTimeout < s.CommandTimeout {
		bad("smtp.session_timeout", "%v is shorter than smtp.command_timeout %v", s.SessionTimeout, s.CommandTimeout)
	}
}
