package aliases

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// include expands an :include: file, read now so edits take effect
// without a reload (as in sendmail).
func (s *state) include(n *Node, t Target, depth int, sender string, fromInclude bool) {
	subject := ":include:" + t.Value
	if depth == 0 {
		n.Note = "error: cannot mail directly to :include:s"
		s.fail(subject, "cannot mail directly to :include:s")
		return
	}
	path := t.Value
	if !filepath.IsAbs(path) && t.Pos.File != "" {
		path = filepath.Join(filepath.Dir(t.Pos.File), path)
	}
	if s.done[subject] {
		n.Note = "duplicate suppressed"
		return
	}
	s.done[subject] = true
	data, unsafe, err := readInclude(path)
	if err != nil {
		msg := fmt.Sprintf("cannot open %s: %v", path, err)
		n.Note = "error: " + msg
		s.fail(subject, msg)
		return
	}
	if unsafe {
		s.unsafe[path] = true // its programs and files are refused
	}
	targets, probs := parseInclude(data, path)
	for _, p := range probs {
		if p.Severity != Warning {
			s.fail(p.Pos.String(), p.Msg)
		}
	}
	n.Note = fmt.Sprintf("include, %d targets", len(targets))
	for _, c := range targets {
		child := &Node{Label: c.String()}
		n.Children = append(n.Children, child)
		s.target(child, c, depth+1, sender, "", true)
		if s.err != nil {
			return
		}
	}
}

// readInclude reads a regular file; unsafe says it is writable by group
// or others.
func readInclude(path string) (data []byte, unsafe bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	if !fi.Mode().IsRegular() {
		return nil, false, fmt.Errorf("not a regular file")
	}
	if data, err = io.ReadAll(f); err != nil {
		return nil, false, err
	}
	return data, fi.Mode().Perm()&0o022 != 0, nil
}

// execTarget admits a |program or /file target where it is safe.
func (s *state) execTarget(n *Node, t Target, depth int, sender string, fromInclude bool) {
	what := "programs"
	if t.Kind == File {
		what = "files"
	}
	var refuse string
	switch {
	case depth == 0:
		refuse = "cannot mail directly to " + what
	case fromInclude && !s.x.AllowIncludeExec:
		refuse = what + " in :include: files are refused (list them in the aliases file, or enable them for includes in the config)"
	case s.unsafe[t.Pos.File] || s.x.Table != nil && s.x.Table.unsafe[t.Pos.File]:
		refuse = what + " from a file writable by group or others are refused (chmod go-w " + t.Pos.File + ")"
	}
	if refuse != "" {
		subject, msg := t.String(), refuse
		if t.Pos.File != "" {
			subject, msg = t.Pos.String(), t.String()+": "+refuse
		}
		n.Note = "error: " + refuse
		s.fail(subject, msg)
		return
	}
	s.emit(n, Final{Kind: t.Kind, Value: t.Value, Sender: sender, Pos: t.Pos})
}
