package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// staleLock is the age after which a leftover path.lock is removed, as
// mail.local and procmail do.
const staleLock = 5 * time.Minute

// AppendFile appends the message to the mbox file at path: a "From
// SENDER DATE" line, the message with LF line endings and >From quoting,
// and a blank line. The file is locked with a path.lock dotlock (when the
// directory allows one) and flock(2), fsynced, and truncated back to its
// old size if the write fails part way. A file that is not a regular
// file, is a symbolic link, or is writable by group or others is refused.
// timeout bounds the wait for the locks.
func AppendFile(ctx context.Context, path string, req Request, now time.Time, timeout time.Duration) Result {
	if !filepath.IsAbs(path) {
		return Result{Failed, fmt.Sprintf("file %s: not an absolute path", path)}
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	f, res, ok := openMbox(path, req.Cred)
	if !ok {
		return res
	}
	defer f.Close()
	unlock, err := dotlock(ctx, path)
	if err != nil {
		return Result{Deferred, fmt.Sprintf("file %s: %v", path, err)}
	}
	defer unlock()
	if err := flock(ctx, f); err != nil {
		return Result{Deferred, fmt.Sprintf("file %s: %v", path, err)}
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)

	start, err := f.Seek(0, 2)
	if err != nil {
		return Result{Deferred, fmt.Sprintf("file %s: %v", path, err)}
	}
	if err := writeMbox(f, req, now); err != nil {
		// Never leave half a message: the next one would start inside it.
		if terr := f.Truncate(start); terr != nil {
			err = fmt.Errorf("%w; truncating back also failed: %v", err, terr)
		}
		return Result{Deferred, fmt.Sprintf("file %s: %v", path, err)}
	}
	return Result{Delivered, fmt.Sprintf("appended to %s", path)}
}

// openMbox opens path for appending, creating it (mode 0600) if absent.
func openMbox(path string, cred *Credentials) (*os.File, Result, bool) {
	fail := func(st Status, format string, args ...any) (*os.File, Result, bool) {
		return nil, Result{st, fmt.Sprintf("file %s: ", path) + fmt.Sprintf(format, args...)}, false
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err == nil && cred != nil {
			if cerr := f.Chown(int(cred.UID), int(cred.GID)); cerr != nil {
				f.Close()
				return fail(Deferred, "chown: %v", cerr)
			}
		}
	}
	switch {
	case errors.Is(err, syscall.ELOOP):
		return fail(Failed, "is a symbolic link (name the real file)")
	case errors.Is(err, fs.ErrNotExist):
		return fail(Failed, "directory does not exist")
	case errors.Is(err, syscall.EISDIR):
		return fail(Failed, "not a regular file")
	case err != nil:
		return fail(Deferred, "%v", err)
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		f.Close()
		return fail(Deferred, "%v", err)
	case !fi.Mode().IsRegular():
		f.Close()
		return fail(Failed, "not a regular file")
	case fi.Mode().Perm()&0o022 != 0:
		f.Close()
		return fail(Failed, "writable by group or others, refused (chmod go-w %s)", path)
	}
	return f, Result{}, true
}

func writeMbox(f *os.File, req Request, now time.Time) error {
	sender := req.Sender
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	if _, err := fmt.Fprintf(f, "From %s %s\n", sender, now.UTC().Format(time.ANSIC)); err != nil {
		return err
	}
	endsNL, err := unixLines(f, req.Message, true)
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
