package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The checks below are sendmail's safefile()/safedirpath() with the flags
// its file mailer uses (SFF_NOSLINK, SFF_NOHLINK, SFF_SAFEDIRPATH, no
// DontBlameSendmail exceptions), made a little stricter where sendmail
// is lenient by default:
//
//   - No symbolic link anywhere: sendmail follows a symlinked directory
//     and checks its target; fanmail refuses it, so the path checked is
//     the path written.
//   - Every directory from / down is owned by root or the program user
//     and writable by neither group nor others. A sticky directory such
//     as /tmp is refused too: sendmail trusts the sticky bit only with
//     DontBlameSendmail=TrustStickyBit, which fanmail does not offer, as
//     anyone may create the name fanmail is about to use there.
//   - The file, when it exists, is a regular file with one link
//     (st_nlink == 1), owned by the program user or root, writable by
//     neither group nor others, and not executable (sendmail's
//     E_SM_ISEXEC). It is opened with O_NOFOLLOW and compared with what
//     was checked (sendmail's filechanged()), so nothing can be swapped
//     in between.
//
// Since nobody but root and the program user can change any directory on
// the path, and the child doing all this runs as the program user, the
// checks cannot be raced by anyone with less privilege than the writer.

// refusal is a target the safety checks refuse: a permanent failure
// with EnhancedRefused.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

func refuse(format string, args ...any) error {
	return &refusal{fmt.Sprintf(format, args...)}
}

// permanent is any other failure retrying cannot fix (no such
// directory, not a regular file).
type permanent struct{ msg string }

func (p *permanent) Error() string { return p.msg }

// checkDirs checks every directory on the way to path's file, from "/",
// for a writer running as uid.
func checkDirs(path string, uid int) error {
	dir := filepath.Dir(path)
	cur := "/"
	parts := strings.Split(strings.TrimPrefix(dir, "/"), "/")
	if dir == "/" {
		parts = nil
	}
	for i := -1; i < len(parts); i++ {
		if i >= 0 {
			cur = filepath.Join(cur, parts[i])
		}
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return &permanent{"directory does not exist"}
		case errors.Is(err, fs.ErrPermission):
			return refuse("directory %s is not searchable by uid %d, refused", filepath.Dir(cur), uid)
		case err != nil:
			return fmt.Errorf("directory %s: %w", cur, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return refuse("directory %s on the path is a symbolic link, refused (name the real directory)", cur)
		case !fi.IsDir():
			return &permanent{fmt.Sprintf("%s on the path is not a directory", cur)}
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 0 && int(st.Uid) != uid {
			return refuse("directory %s is owned by uid %d, refused (only root or the program user, uid %d, may own a directory on the path)", cur, st.Uid, uid)
		}
		if fi.Mode().Perm()&0o022 != 0 {
			kind := "writable by group or others"
			if fi.Mode()&fs.ModeSticky != 0 {
				kind += " (sticky directories are not trusted either)"
			}
			return refuse("directory %s is %s, refused (chmod go-w %s)", cur, kind, cur)
		}
	}
	return nil
}

// checkFile checks an existing file's lstat result.
func checkFile(path string, fi fs.FileInfo, uid int) error {
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return refuse("is a symbolic link, refused (name the real file)")
	case !fi.Mode().IsRegular():
		return &permanent{"not a regular file"}
	case st.Nlink != 1:
		return refuse("has %d hard links, refused (a file reached by another name could be anyone's)", st.Nlink)
	case st.Uid != 0 && int(st.Uid) != uid:
		return refuse("is owned by uid %d, refused (only root or the program user, uid %d, may own it)", st.Uid, uid)
	case fi.Mode().Perm()&0o022 != 0:
		return refuse("writable by group or others, refused (chmod go-w %s)", path)
	case fi.Mode().Perm()&0o111 != 0:
		return refuse("is executable, refused (chmod a-x %s)", path)
	}
	return nil
}

// openSafe opens path for appending after the checks above, creating it
// with mode 0600 (owned by the writer) if it does not exist. The error
// is a *refusal, a *permanent or a temporary error.
func openSafe(path string) (*os.File, error) {
	uid := os.Geteuid()
	if err := checkDirs(path, uid); err != nil {
		return nil, err
	}
	before, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		// O_EXCL|O_NOFOLLOW: a name planted since the Lstat fails here.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, openError(err)
		}
		return f, nil
	}
	if err != nil {
		return nil, err
	}
	if err := checkFile(path, before, uid); err != nil {
		return nil, err
	}
	// O_NONBLOCK: should a FIFO be swapped in, the open does not hang
	// before the comparison below catches it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, openError(err)
	}
	after, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	b, a := before.Sys().(*syscall.Stat_t), after.Sys().(*syscall.Stat_t)
	if a.Dev != b.Dev || a.Ino != b.Ino || a.Nlink != b.Nlink || a.Uid != b.Uid || !after.Mode().IsRegular() {
		f.Close()
		return nil, refuse("changed while being opened, refused")
	}
	return f, nil
}

func openError(err error) error {
	switch {
	case errors.Is(err, syscall.ELOOP):
		return refuse("is a symbolic link, refused (name the real file)")
	case errors.Is(err, fs.ErrPermission):
		return refuse("permission denied to uid %d, refused", os.Geteuid())
	case errors.Is(err, syscall.EISDIR):
		return &permanent{"not a regular file"}
	}
	return err
}
