package queuegroups

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Body is a message as ingress receives it, before it is queued: the
// first part (up to bodyMemory bytes) in memory, the rest in an unlinked
// temporary file in a queue directory, so a session holds the same
// memory whatever the message's size. It implements envelope.Body;
// Enqueue copies it into the journal, after which it is closed.
type Body struct {
	pool *bodyPool
	dir  string
	mem  *[]byte // from pool; len is what it holds, at most bodyMemory
	file *os.File
	size int64
	err  error // the first error writing the temporary file
}

// bodyMemory is how much of a message a Body keeps in memory: most posts
// fit whole, and a big one costs a session no more than this.
const bodyMemory = 64 << 10

// tmpPrefix names the temporary body files of filesystems without
// O_TMPFILE; openDir removes any a crash left behind.
const tmpPrefix = "body-"

// bodyPool recycles the in-memory parts of bodies, so a small post costs
// no 64 KiB allocation.
type bodyPool struct{ p sync.Pool }

func newBodyPool() *bodyPool {
	bp := &bodyPool{}
	bp.p.New = func() any { b := make([]byte, 0, bodyMemory); return &b }
	return bp
}

func (bp *bodyPool) get() *[]byte  { b := bp.p.Get().(*[]byte); *b = (*b)[:0]; return b }
func (bp *bodyPool) put(b *[]byte) { bp.p.Put(b) }

// NewBody returns an empty Body whose overflow goes to the default
// group's first directory.
func (q *Queue) NewBody() *Body {
	return &Body{pool: q.bodies, dir: q.groups[DefaultGroup].cfg.Dirs[0], mem: q.bodies.get()}
}

// Size is the number of bytes written.
func (b *Body) Size() int64 { return b.size }

// Err is the first error writing the temporary file, if any: a local
// problem, not the client's.
func (b *Body) Err() error { return b.err }

// Write appends p.
func (b *Body) Write(p []byte) (int, error) {
	n := 0
	if m := *b.mem; len(m) < cap(m) {
		n = copy(m[len(m):cap(m)], p)
		*b.mem = m[:len(m)+n]
		b.size += int64(n)
		p = p[n:]
	}
	if len(p) == 0 {
		return n, nil
	}
	if err := b.spill(); err != nil {
		return n, err
	}
	w, err := b.file.Write(p)
	b.size += int64(w)
	if err != nil {
		b.err = fmt.Errorf("write message body: %w", err)
		return n + w, b.err
	}
	return n + w, nil
}

// ReadFrom reads r to its end into b: straight into the memory part,
// then through a pooled buffer into the file.
func (b *Body) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for m := *b.mem; len(m) < cap(m); m = *b.mem {
		n, err := r.Read(m[len(m):cap(m)])
		*b.mem = m[:len(m)+n]
		b.size += int64(n)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	if err := b.spill(); err != nil {
		return total, err
	}
	buf := b.pool.get()
	defer b.pool.put(buf)
	chunk := (*buf)[:cap(*buf)]
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			w, werr := b.file.Write(chunk[:n])
			b.size += int64(w)
			total += int64(w)
			if werr != nil {
				b.err = fmt.Errorf("write message body: %w", werr)
				return total, b.err
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// spill opens the temporary file if it is not open yet.
func (b *Body) spill() error {
	if b.err != nil {
		return b.err
	}
	if b.file != nil {
		return nil
	}
	f, err := tempFile(b.dir)
	if err != nil {
		b.err = err
		return err
	}
	b.file = f
	return nil
}

// tempFile opens an unlinked file in dir: O_TMPFILE where the filesystem
// has it, else a named file removed at once.
func tempFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, "(message body)")), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("create temporary body file in %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create temporary body file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink temporary body file: %w", err)
	}
	return f, nil
}

// removeStaleBodies deletes named temporary bodies a crash left in dir.
func removeStaleBodies(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) && strings.HasSuffix(e.Name(), ".tmp") {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// ReadAt implements io.ReaderAt over what was written.
func (b *Body) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if off >= b.size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := b.size - off; int64(want) > rest {
		p = p[:rest]
	}
	n := 0
	mem := *b.mem
	if off < int64(len(mem)) {
		n = copy(p, mem[off:])
	}
	if n < len(p) {
		m, err := b.file.ReadAt(p[n:], off+int64(n)-int64(len(mem)))
		n += m
		if err != nil && err != io.EOF {
			return n, err
		}
		if n < len(p) {
			return n, io.EOF
		}
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// Close releases the memory and the temporary file; b is empty after.
func (b *Body) Close() error {
	var err error
	if b.file != nil {
		err = b.file.Close()
		b.file = nil
	}
	if b.mem != nil {
		b.pool.put(b.mem)
		b.mem = nil
	}
	b.size = 0
	return err
}
