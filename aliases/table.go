package aliases

import (
	"fmt"
	"os"
	"strings"
)

// LoadOptions change how a Table is built.
type LoadOptions struct {
	// Merge joins the values of a name defined more than once, like
	// sendmail's -A map flag. The default is sendmail's: a warning, and
	// the last definition wins.
	Merge bool
	// LocalDomains is class w (see ClassW): a name written NAME@DOMAIN
	// on the left of the colon is NAME when DOMAIN is one of these, and
	// an error otherwise.
	LocalDomains []string
}

// ClassW returns sendmail's class w for fanmail, the domains whose
// addresses are local (looked up as aliases): the configured local
// domains, then the host name, then localhost; lowercased, each once.
// The first is the primary domain, which qualifies bare local names.
func ClassW(hostname string, localDomains ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range append(append(localDomains[:len(localDomains):len(localDomains)], hostname), "localhost") {
		d = strings.TrimSuffix(lower(strings.TrimSpace(d)), ".")
		if d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// Table is the alias map built from one or more aliases files. It is
// immutable once built, so a server can load a new one and swap it in
// atomically while expansions of the old one finish.
type Table struct {
	entries map[string]*Entry
	// refused holds the names whose only definitions were refused: they
	// expand to an error, not to a local mailbox of the same name.
	refused map[string]Pos
	unsafe  map[string]bool // files writable by group or others
}

// Load reads the aliases files in order (later files override earlier
// ones like later lines do) and returns the table with every problem
// found. A bad entry is an Error problem and is left out; the rest of its
// file is still used. A file that cannot be read is a Fatal problem; the
// table still holds the entries of the other files.
func Load(opts LoadOptions, files ...string) (*Table, Problems) {
	t := &Table{entries: map[string]*Entry{}, refused: map[string]Pos{}, unsafe: map[string]bool{}}
	var probs Problems
	for _, f := range files {
		data, err := readChecked(f)
		if err != nil {
			probs = append(probs, Problem{Pos{f, 0}, Fatal, err.Error()})
			continue
		}
		if writableByOthers(f) {
			t.unsafe[f] = true
			probs = append(probs, Problem{Pos{f, 0}, Warning,
				"writable by group or others: its |program and /file targets are refused (chmod go-w " + f + ")"})
		}
		p := parseFile(data, f, opts.LocalDomains)
		probs = append(probs, p.probs...)
		for _, e := range p.refused {
			t.refused[e.Name] = e.Pos
		}
		probs = t.add(p.entries, opts, probs)
	}
	for name := range t.refused {
		if _, ok := t.entries[name]; ok {
			delete(t.refused, name) // another definition of it holds
		}
	}
	return t, probs
}

func (t *Table) add(entries []Entry, opts LoadOptions, probs Problems) Problems {
	for i := range entries {
		e := &entries[i]
		old, dup := t.entries[e.Name]
		switch {
		case !dup:
			t.entries[e.Name] = e
		case opts.Merge:
			old.Targets = append(old.Targets, e.Targets...)
			probs = append(probs, Problem{e.Pos, Warning, fmt.Sprintf(
				"duplicate alias name %s (first at %s): values merged", e.Name, old.Pos)})
		default:
			t.entries[e.Name] = e
			probs = append(probs, Problem{e.Pos, Warning, fmt.Sprintf(
				"duplicate alias name %s (also at %s): this later definition wins; merge them into one entry", e.Name, old.Pos)})
		}
	}
	return probs
}

// Len is the number of names in the table.
func (t *Table) Len() int { return len(t.entries) }

// Lookup returns the entry for name, compared case-insensitively.
func (t *Table) Lookup(name string) (Entry, bool) {
	e, ok := t.lookup(name)
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Resolve reports whether the local part of an address reaches an alias,
// trying it as sendmail does: user+detail, then user+*, then user.
func (t *Table) Resolve(local string) bool {
	var buf [3]candidate
	for _, c := range candidates(buf[:0], lower(local)) {
		if _, ok := t.lookup(c.key); ok {
			return true
		}
	}
	return false
}

// candidate is one name an address is looked up as, and how many alias
// levels sendmail spends reaching it (its ruleset 5 rewrites user+detail
// to user+* and then to user, each a level deeper).
type candidate struct {
	key   string
	extra int
}

// candidates appends to dst the names a lowercased local name is looked
// up as.
func candidates(dst []candidate, name string) []candidate {
	dst = append(dst, candidate{name, 0})
	user, detail, ok := strings.Cut(name, "+")
	switch {
	case !ok || user == "":
	case detail == "*":
		dst = append(dst, candidate{user, 1})
	default:
		dst = append(dst, candidate{user + "+*", 1}, candidate{user, 2})
	}
	return dst
}

func (t *Table) lookup(name string) (*Entry, bool) {
	if t == nil {
		return nil, false
	}
	e, ok := t.entries[lower(name)]
	return e, ok
}

// isName reports whether name is defined in the files, as an alias or as
// a refused entry. Such a name is not a local mailbox.
func (t *Table) isName(name string) (refusedAt Pos, defined bool) {
	if t == nil {
		return Pos{}, false
	}
	if _, ok := t.entries[name]; ok {
		return Pos{}, true
	}
	p, ok := t.refused[name]
	return p, ok
}

// readChecked reads a file that must be a regular file.
func readChecked(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	return data, nil
}

func writableByOthers(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Perm()&0o022 != 0
}
