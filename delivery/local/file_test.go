package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var now = time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)

// safeDir is a fresh directory whose whole path passes the safety
// checks for uid, owned by owner (nil: the test's own user). t.TempDir
// will not do: /tmp is world-writable. The package directory usually is
// safe (a checkout owned by its user or root); where it is not, the test
// is skipped with the reason.
func safeDir(t *testing.T, owner *Credentials) string {
	t.Helper()
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(cwd, ".test-safe-")
	if err != nil {
		t.Skipf("no safe directory for /file tests: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	uid := os.Geteuid()
	if owner != nil {
		uid = int(owner.UID)
		if err := os.Chown(dir, uid, int(owner.GID)); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkDirs(filepath.Join(dir, "x"), uid); err != nil {
		t.Skipf("the package directory is not on a safe path, so /file delivery cannot be tested here: %v", err)
	}
	return dir
}

func TestAppendFile(t *testing.T) {
	path := filepath.Join(safeDir(t, nil), "archive.mbox")
	for i, sender := range []string{"owner-x@example.org", ""} {
		res := AppendFile(context.Background(), path, Request{Message: strings.NewReader(msg + "no newline"), Sender: sender}, now, 5*time.Second)
		if res.Status != Delivered || res.Reason != "appended to "+path {
			t.Fatalf("append %d: %+v", i, res)
		}
	}
	got, _ := os.ReadFile(path)
	one := "Subject: hi\n\n>From the list\n>>From quoted\nbye\nno newline\n\n"
	want := "From owner-x@example.org Wed Nov 25 06:00:00 2026\n" + one + "From MAILER-DAEMON Wed Nov 25 06:00:00 2026\n" + one
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("mbox (-want +got):\n%s", diff)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("created with mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dotlock left behind: %v", err)
	}
}

func TestAppendFileDevNull(t *testing.T) {
	res := AppendFile(context.Background(), "/dev/null", Request{Message: strings.NewReader(msg)}, now, time.Second)
	if res.Status != Delivered || !strings.Contains(res.Reason, "discarded") {
		t.Errorf("/dev/null: %+v", res)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("spool read error")
	}
	r.n--
	return copy(p, "line\n"), nil
}

// TestAppendFileRollsBack: a message the server cannot read to its end
// is not appended in part, though the helper has written what it got.
func TestAppendFileRollsBack(t *testing.T) {
	good := filepath.Join(safeDir(t, nil), "good")
	old := "From a Mon Jan  1 00:00:00 2026\nold\n\n"
	os.WriteFile(good, []byte(old), 0o600)
	res := AppendFile(context.Background(), good, Request{Message: &failingReader{n: 3}}, now, 5*time.Second)
	if res.Status != Deferred || !strings.Contains(res.Reason, "spool read error") {
		t.Errorf("failing reader: %+v", res)
	}
	if got, _ := os.ReadFile(good); string(got) != old {
		t.Errorf("partial write left %q", got)
	}
}

// TestAppendFileRefuses: targets sendmail's safefile() refuses fail the
// recipient with a reason naming the problem; nothing is written.
func TestAppendFileRefuses(t *testing.T) {
	dir := safeDir(t, nil)
	mkdir := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("old\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	real := mkdir("real", 0o755)
	os.Symlink(real, filepath.Join(dir, "linkdir"))
	good := file("good", 0o600)
	os.Symlink(good, filepath.Join(dir, "symlink"))
	os.Link(good, filepath.Join(dir, "hardlink"))
	groupDir := mkdir("groupdir", 0o775)
	stickyDir := mkdir("sticky", 0o777|os.ModeSticky)
	file("groupwritable", 0o620)
	file("executable", 0o700)

	tests := []struct {
		name, path string
		enhanced   string // "" for a plain permanent failure
		reason     string
	}{
		{"symlinked directory", filepath.Join(dir, "linkdir", "mbox"), EnhancedRefused, "linkdir on the path is a symbolic link"},
		{"symlink", filepath.Join(dir, "symlink"), EnhancedRefused, "is a symbolic link"},
		{"hard link", filepath.Join(dir, "hardlink"), EnhancedRefused, "has 2 hard links"},
		{"hard link's other name", good, EnhancedRefused, "has 2 hard links"},
		{"group-writable directory", filepath.Join(groupDir, "mbox"), EnhancedRefused, "groupdir is writable by group or others"},
		{"sticky directory", filepath.Join(stickyDir, "mbox"), EnhancedRefused, "sticky directories are not trusted"},
		{"group-writable file", filepath.Join(dir, "groupwritable"), EnhancedRefused, "writable by group or others"},
		{"executable file", filepath.Join(dir, "executable"), EnhancedRefused, "is executable"},
		{"directory", real, "", "not a regular file"},
		{"relative", "relative/file", "", "not an absolute path"},
		{"missing directory", filepath.Join(dir, "nodir", "f"), "", "directory does not exist"},
	}
	if os.Geteuid() == 0 {
		other := mkdir("otherdir", 0o755)
		os.Chown(other, 12345, 12345)
		os.Chown(file("otherfile", 0o600), 12345, 12345)
		tests = append(tests,
			struct{ name, path, enhanced, reason string }{"directory of another user", filepath.Join(other, "mbox"), EnhancedRefused, "owned by uid 12345"},
			struct{ name, path, enhanced, reason string }{"file of another user", filepath.Join(dir, "otherfile"), EnhancedRefused, "owned by uid 12345"},
		)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := AppendFile(context.Background(), tc.path, Request{Message: strings.NewReader(msg)}, now, 5*time.Second)
			if res.Status != Failed || res.Enhanced != tc.enhanced || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("got %+v, want failed (%q) with %q", res, tc.enhanced, tc.reason)
			}
		})
	}
	if got, _ := os.ReadFile(good); string(got) != "old\n" {
		t.Errorf("a refused target was written: %q", got)
	}
	for _, d := range []string{real, groupDir, stickyDir} {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Errorf("%s: a refused target was created: %v", d, entries)
		}
	}
}

// TestAppendFileAsProgramUser: the helper runs as the program user, so a
// created file is that user's and a file only root may write is not
// written, however safe its path.
func TestAppendFileAsProgramUser(t *testing.T) {
	cred := asNobody(t)
	root := safeDir(t, nil)
	dir := filepath.Join(root, "nobody")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(dir, int(cred.UID), int(cred.GID))
	req := func() Request { return Request{Message: strings.NewReader(msg), Cred: cred} }

	created := filepath.Join(dir, "created.mbox")
	if res := AppendFile(context.Background(), created, req(), now, 5*time.Second); res.Status != Delivered {
		t.Fatalf("create: %+v", res)
	}
	fi, err := os.Stat(created)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != cred.UID || st.Gid != cred.GID {
		t.Errorf("created file owned by %d:%d, want the program user %d:%d", st.Uid, st.Gid, cred.UID, cred.GID)
	}

	rootOnly := filepath.Join(dir, "root-only")
	os.WriteFile(rootOnly, []byte("old\n"), 0o644) // root's: safe, but not nobody's to write
	rootDirFile := filepath.Join(root, "new.mbox") // a root directory nobody may not create in
	for _, path := range []string{rootOnly, rootDirFile} {
		res := AppendFile(context.Background(), path, req(), now, 5*time.Second)
		if res.Status != Failed || res.Enhanced != EnhancedRefused || !strings.Contains(res.Reason, "permission denied to uid 65534") {
			t.Errorf("%s: got %+v, want refused: permission denied", path, res)
		}
	}
	if got, _ := os.ReadFile(rootOnly); string(got) != "old\n" {
		t.Errorf("the root-only file was appended to: %q", got)
	}
	if _, err := os.Stat(rootDirFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the program user created a file in root's directory: %v", err)
	}
}

func TestAppendFileLocked(t *testing.T) {
	path := filepath.Join(safeDir(t, nil), "mbox")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	res := AppendFile(context.Background(), path, Request{Message: strings.NewReader(msg)}, now, 200*time.Millisecond)
	if res.Status != Deferred || !strings.Contains(res.Reason, "flock") {
		t.Errorf("flock held: %+v", res)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	os.WriteFile(path+".lock", nil, 0o600)
	res = AppendFile(context.Background(), path, Request{Message: strings.NewReader(msg)}, now, 200*time.Millisecond)
	if res.Status != Deferred || !strings.Contains(res.Reason, ".lock") {
		t.Errorf("dotlock held: %+v", res)
	}
	old := time.Now().Add(-2 * staleLock)
	os.Chtimes(path+".lock", old, old)
	if res := AppendFile(context.Background(), path, Request{Message: strings.NewReader(msg)}, now, 5*time.Second); res.Status != Delivered {
		t.Errorf("stale dotlock not broken: %+v", res)
	}
}

// TestAppendFileCancelled: the server giving up (its context ends)
// stops the helper with SIGTERM and sends no more, and a helper stopped
// mid-write rolls back.
func TestAppendFileCancelled(t *testing.T) {
	path := filepath.Join(safeDir(t, nil), "mbox")
	old := "From a Mon Jan  1 00:00:00 2026\nold\n\n"
	os.WriteFile(path, []byte(old), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	src := &stallingReader{parts: []string{"Subject: slow\r\n\r\nfirst part\r\n", "second part\r\n"}, stall: func() {
		time.Sleep(300 * time.Millisecond) // the helper is writing by now
		cancel()
		time.Sleep(300 * time.Millisecond) // and has had the signal
	}}
	res := AppendFile(ctx, path, Request{Message: src}, now, 5*time.Second)
	if res.Status != Deferred || !strings.Contains(res.Reason, "interrupted") {
		t.Errorf("cancelled: %+v", res)
	}
	if got, _ := os.ReadFile(path); string(got) != old {
		t.Errorf("an abandoned write left %q", got)
	}
}

// stallingReader returns parts in turn, calling stall before the second.
type stallingReader struct {
	parts []string
	stall func()
	n     int
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if r.n == len(r.parts) {
		return 0, io.EOF
	}
	if r.n == 1 {
		r.stall()
	}
	r.n++
	return copy(p, r.parts[r.n-1]), nil
}

func TestFrames(t *testing.T) {
	body := strings.Repeat("0123456789", 10_000) // several frames
	var framed bytes.Buffer
	if err := writeFramed(&framed, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	whole := framed.Bytes()
	got, err := io.ReadAll(&frameReader{r: bufio.NewReader(bytes.NewReader(whole))})
	if err != nil || string(got) != body {
		t.Fatalf("round trip: %d bytes, %v", len(got), err)
	}
	// Cut anywhere before the end marker, the message is incomplete.
	for _, cut := range []int{0, 3, 4, 100, len(whole) - 4, len(whole) - 1} {
		_, err := io.ReadAll(&frameReader{r: bufio.NewReader(bytes.NewReader(whole[:cut]))})
		if !errors.Is(err, errIncomplete) {
			t.Errorf("cut at %d of %d: %v, want errIncomplete", cut, len(whole), err)
		}
	}
	if _, err := io.ReadAll(&frameReader{r: bufio.NewReader(bytes.NewReader([]byte{0xff, 0, 0, 0}))}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("oversized frame: %v", err)
	}
}
