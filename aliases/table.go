package aliases

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// LoadOptions change how a Table is built.
type LoadOptions struct {
	// Merge joins the values of a name defined more than once, like
	// sendmail's -A map flag. The default is sendmail's: a warning, and
	// the last definition wins.
	Merge bool
}

// Table is the alias map built from one or more aliases files. It is
// immutable once built, so a server can load a new one and swap it in
// atomically while expansions of the old one finish.
type Table struct {
	entries map[string]*Entry
	unsafe  map[string]bool // files writable by group or others
}

// Load reads the aliases files in order (later files override earlier
// ones like later lines do) and returns the table with every problem
// found. A file that cannot be read is an error problem; the table still
// holds the entries of the other files.
func Load(opts LoadOptions, files ...string) (*Table, Problems) {
	b := newBuilder(opts)
	for _, f := range files {
		data, err := readChecked(f)
		if err != nil {
			b.probs = append(b.probs, Problem{Pos{f, 0}, Error, err.Error()})
			continue
		}
		if writableByOthers(f) {
			b.t.unsafe[f] = true
			b.probs = append(b.probs, Problem{Pos{f, 0}, Warning,
				"writable by group or others: its |program and /file targets are refused (chmod go-w " + f + ")"})
		}
		b.add(bytes.NewReader(data), f, bytes.Count(data, []byte("\n")))
	}
	return b.t, b.probs
}

// LoadReader builds a table from one file's content, labelled name; it is
// Load for tests and for content that is not on disk.
func LoadReader(opts LoadOptions, r io.Reader, name string) (*Table, Problems) {
	b := newBuilder(opts)
	b.add(r, name, 0)
	return b.t, b.probs
}

type builder struct {
	opts  LoadOptions
	t     *Table
	probs Problems
}

func newBuilder(opts LoadOptions) *builder {
	return &builder{opts: opts, t: &Table{entries: make(map[string]*Entry), unsafe: map[string]bool{}}}
}

func (b *builder) add(r io.Reader, name string, lines int) {
	entries, probs := parse(r, name, lines)
	b.probs = append(b.probs, probs...)
	if len(b.t.entries) == 0 {
		b.t.entries = make(map[string]*Entry, len(entries))
	}
	for i := range entries {
		e := &entries[i]
		old, dup := b.t.entries[e.Name]
		switch {
		case !dup:
			b.t.entries[e.Name] = e
		case b.opts.Merge:
			old.Targets = append(old.Targets, e.Targets...)
			b.probs = append(b.probs, Problem{e.Pos, Warning, fmt.Sprintf(
				"duplicate alias name %s (first at %s): values merged", e.Name, old.Pos)})
		default:
			b.t.entries[e.Name] = e
			b.probs = append(b.probs, Problem{e.Pos, Warning, fmt.Sprintf(
				"duplicate alias name %s (also at %s): this later definition wins; merge them into one entry", e.Name, old.Pos)})
		}
	}
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

func (t *Table) lookup(name string) (*Entry, bool) {
	if t == nil {
		return nil, false
	}
	e, ok := t.entries[lower(name)]
	return e, ok
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
