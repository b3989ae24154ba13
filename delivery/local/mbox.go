package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// staleLock is the age after which a leftover path.lock is removed, as
// mail.local and procmail do.
const staleLock = 5 * time.Minute

// appendMbox is the file helper's work, done as the program user: it
// appends msg to the mbox file at path (see AppendFile) once openSafe
// has accepted the path. timeout bounds the wait for the locks; stop
// ending (the server's SIGTERM) abandons the write, which is then
// truncated back.
func appendMbox(stop context.Context, path string, msg io.Reader, sender string, now time.Time, timeout time.Duration) Result {
	f, err := openSafe(filepath.Clean(path))
	if err != nil {
		return fileResult(path, err)
	}
	defer f.Close()
	lockCtx, cancel := context.WithTimeout(stop, timeout)
	defer cancel()
	unlock, err := dotlock(lockCtx, path)
	if err != nil {
		return Result{Status: Deferred, Reason: fmt.Sprintf("file %s: %v", path, err)}
	}
	defer unlock()
	if err := flock(lockCtx, f); err != nil {
		return Result{Status: Deferred, Reason: fmt.Sprintf("file %s: %v", path, err)}
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)

	start, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return Result{Status: Deferred, Reason: fmt.Sprintf("file %s: %v", path, err)}
	}
	if err := writeMbox(f, &stopReader{stop: stop, r: msg}, sender, now); err != nil {
		// Never leave half a message: the next one would start inside it.
		if terr := f.Truncate(start); terr != nil {
			err = fmt.Errorf("%w; truncating back also failed: %v", err, terr)
		}
		return Result{Status: Deferred, Reason: fmt.Sprintf("file %s: %v", path, err)}
	}
	return Result{Status: Delivered, Reason: fmt.Sprintf("appended to %s", path)}
}

// fileResult classifies an openSafe error.
func fileResult(path string, err error) Result {
	var r *refusal
	var p *permanent
	switch {
	case errors.As(err, &r):
		return Result{Status: Failed, Reason: fmt.Sprintf("file %s: %v", path, err), Enhanced: EnhancedRefused}
	case errors.As(err, &p):
		return Result{Status: Failed, Reason: fmt.Sprintf("file %s: %v", path, err)}
	}
	return Result{Status: Deferred, Reason: fmt.Sprintf("file %s: %v", path, err)}
}

// stopReader fails once stop has ended, so a write the server abandons
// is rolled back rather than finished with what was read so far.
type stopReader struct {
	stop context.Context
	r    io.Reader
}

func (s *stopReader) Read(p []byte) (int, error) {
	if err := s.stop.Err(); err != nil {
		return 0, fmt.Errorf("abandoned: %w", context.Cause(s.stop))
	}
	return s.r.Read(p)
}

func writeMbox(f *os.File, msg io.Reader, sender string, now time.Time) error {
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	if _, err := fmt.Fprintf(f, "From %s %s\n", sender, now.UTC().Format(time.ANSIC)); err != nil {
		return err
	}
	endsNL, err := unixLines(f, msg, true)
	if err != nil {
		return err
	}
	tail := "\n"
	if !endsNL {
		tail = "\n\n"
	}
	if _, err := f.WriteString(tail); err != nil {
		return err
	}
	return f.Sync()
}

// flock takes an exclusive flock(2), polling so ctx can end the wait.
func flock(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("flock: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("locked by another process (flock)")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dotlock creates path.lock exclusively. A directory that does not let
// us create files means no dotlock: flock still protects the file.
func dotlock(ctx context.Context, path string) (func(), error) {
	lock := path + ".lock"
	for {
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			f.Close()
			return func() { os.Remove(lock) }, nil
		}
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return func() {}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("dotlock: %w", err)
		}
		if fi, err := os.Stat(lock); err == nil && time.Since(fi.ModTime()) > staleLock {
			os.Remove(lock)
			continue
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("locked by another process (%s)", lock)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
