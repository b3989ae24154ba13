package expander

import (
	"context"
	"errors"
	"fanmail/listaddr"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"fanmail/address"
	"fanmail/aliases"
	"fanmail/lists"
)

// AliasConfig is the aliases files a server serves and how.
type AliasConfig struct {
	Files            []string
	LocalDomains     []string // class w (aliases.ClassW); the first qualifies bare names
	Merge            bool     // join names defined twice (sendmail -A) instead of last-wins
	AllowIncludeExec bool     // honour |program and /file from :include: files
	// BounceAddress is the envelope sender of mail forwarded through an
	// alias without owner-NAME; "" is MailerDaemon of the hostname.
	BounceAddress string
	Logger        *slog.Logger
	// Lists, if set, gives the lists store's lists, so each load reports
	// the lists an alias of the same address hides.
	Lists func(context.Context) ([]lists.List, error)
}

// Aliases holds the current alias table of a running server. A reload
// builds a new table and swaps it in atomically; one that cannot read a
// file keeps the previous table.
type Aliases struct {
	cfg   AliasConfig
	log   *slog.Logger
	table atomic.Pointer[aliases.Table]

	mu     sync.Mutex // one reload at a time
	stamps []stamp    // the files as last loaded
}

// stamp is what tells a file changed: its size and modification time.
type stamp struct {
	size  int64
	mtime time.Time
	err   bool
}

func stampOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{err: true}
	}
	return stamp{size: fi.Size(), mtime: fi.ModTime()}
}

// LoadAliases loads the files. A bad entry is logged with its FILE:LINE
// and left out, and every other alias is served (as newaliases does);
// only a file that cannot be read at all is an error, so a server does
// not start without one of its aliases files. Warnings are logged.
func LoadAliases(cfg AliasConfig) (*Aliases, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Aliases{cfg: cfg, log: cfg.Logger}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload reads the files again and logs every problem with its file and
// line; bad entries are left out. When a file cannot be read at all the
// previous table stays in use.
func (a *Aliases) Reload() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	stamps := make([]stamp, len(a.cfg.Files))
	for i, f := range a.cfg.Files {
		stamps[i] = stampOf(f)
	}
	t, probs := aliases.Load(aliases.LoadOptions{Merge: a.cfg.Merge, LocalDomains: a.cfg.LocalDomains}, a.cfg.Files...)
	var fatal []error
	for _, p := range probs {
		switch p.Severity {
		case aliases.Fatal:
			fatal = append(fatal, fmt.Errorf("%s: %s", p.Pos, p.Msg))
			a.log.Error("aliases: "+p.Pos.String()+": "+p.Msg, "file", p.Pos.File)
		case aliases.Error:
			a.log.Error("aliases: "+p.Pos.String()+": "+p.Msg, "file", p.Pos.File, "line", p.Pos.Line)
		default:
			a.log.Warn("aliases: "+p.Pos.String()+": "+p.Msg, "file", p.Pos.File, "line", p.Pos.Line)
		}
	}
	a.stamps = stamps // a broken file is not retried until it changes again
	if len(fatal) > 0 {
		if a.table.Load() != nil {
			a.log.Error("aliases reload failed; the previous table stays in use", "errors", len(fatal))
		}
		return fmt.Errorf("aliases: %w", errors.Join(fatal...))
	}
	a.table.Store(t)
	a.log.Info("aliases loaded", "files", strings.Join(a.cfg.Files, ","), "aliases", t.Len(), "errors", probs.Errors())
	if a.cfg.Lists != nil {
		ls, err := a.cfg.Lists(context.Background())
		if err != nil {
			a.log.Warn("aliases: cannot compare with the lists store", "err", err)
		}
		for _, l := range a.Shadowed(ls) {
			a.log.Warn("aliases: an alias and a list share an address; the alias wins", "address", l)
		}
	}
	return nil
}

// Watch reloads whenever a file's size or modification time changes,
// checking every interval, until ctx ends.
func (a *Aliases) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.changed() {
			_ = a.Reload()
		}
	}
}

func (a *Aliases) changed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, f := range a.cfg.Files {
		if stampOf(f) != a.stamps[i] {
			return true
		}
	}
	return false
}

// Table is the table in use now.
func (a *Aliases) Table() *aliases.Table { return a.table.Load() }

// isAlias reports whether rcpt is an address in a local domain whose
// local part the current table defines.
func (a *Aliases) isAlias(rcpt string) (string, bool) {
	m, err := address.Parse(rcpt)
	if err != nil {
		return "", false
	}
	local := false
	for _, d := range a.cfg.LocalDomains {
		if strings.EqualFold(m.Domain, d) {
			local = true
			break
		}
	}
	if !local {
		return "", false
	}
	if !a.Table().Resolve(m.Local) { // user+detail, user+*, user
		return "", false
	}
	return strings.ToLower(m.Local) + "@" + strings.ToLower(m.Domain), true
}

// isLocalDomain reports whether addr's domain is one of the local domains.
func (a *Aliases) isLocalDomain(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	for _, d := range a.cfg.LocalDomains {
		if at >= 0 && strings.EqualFold(addr[at+1:], d) {
			return true
		}
	}
	return false
}

// expander returns an aliases expander over the current table, with the
// list store as its list source.
func (a *Aliases) expander(lists aliases.ListSource) *aliases.Expander {
	return &aliases.Expander{Table: a.Table(), Lists: lists, LocalDomains: a.cfg.LocalDomains,
		AllowIncludeExec: a.cfg.AllowIncludeExec, Log: a.log}
}

// Shadowed lists the lists that an alias of the same name hides: an
// address that is both goes to the alias (aliases are looked up first,
// as sendmail looks up aliases before anything else).
func (a *Aliases) Shadowed(ls []lists.List) []string {
	var out []string
	for _, l := range ls {
		if _, ok := a.isAlias(l.Address); ok {
			out = append(out, l.Address)
		}
	}
	return out
}

// listSource lets alias expansion reach the lists store through the
// expander's cache.
type listSource struct{ x *Expander }

func (s listSource) ListMembers(ctx context.Context, addr string) ([]string, bool, error) {
	t, err := s.x.target(ctx, addr)
	if err != nil || t.list == "" || t.role != listaddr.Post || t.roleAddr {
		return nil, false, err
	}
	members, err := s.x.Members(ctx, t.list)
	if err != nil {
		return nil, false, err
	}
	return members, true, nil
}
