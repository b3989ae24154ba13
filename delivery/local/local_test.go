package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const msg = "Subject: hi\r\n\r\nFrom the list\r\n>From quoted\r\nbye\r\n"

func TestRunProgram(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	tests := []struct {
		name    string
		command string
		timeout time.Duration
		status  Status
		reason  string // substring
	}{
		{"delivered", "cat > " + out + "; echo ok", time.Second, Delivered, `exited 0: ok`},
		{"tempfail", "echo busy >&2; exit 75", time.Second, Deferred, "exited 75 (EX_TEMPFAIL): busy"},
		{"nouser", "exit 67", time.Second, Failed, "exited 67 (EX_NOUSER)"},
		{"other failure", "exit 1", time.Second, Failed, "exited 1"},
		{"ignores stdin", "true", time.Second, Delivered, "exited 0"},
		{"timeout kills the group", "sleep 30 & sleep 30; wait", 200 * time.Millisecond, Deferred, "timed out after 200ms"},
		{"signal", "kill -TERM $$", time.Second, Deferred, "killed by signal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res := RunProgram(context.Background(), tc.command, Request{Message: strings.NewReader(msg), Sender: "owner-x@example.org"}, tc.timeout)
			if res.Status != tc.status || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("got %v %q, want %v containing %q", res.Status, res.Reason, tc.status, tc.reason)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(strings.ReplaceAll(msg, "\r\n", "\n"), string(got)); diff != "" {
		t.Errorf("program stdin (-want +got):\n%s", diff)
	}
}

func TestRunProgramEnv(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	res := RunProgram(context.Background(), `echo "$SENDER $RECIPIENT" > `+out, Request{Message: strings.NewReader(""), Sender: "s@example.org", Recipient: "list"}, time.Second)
	if res.Status != Delivered {
		t.Fatal(res)
	}
	if got, _ := os.ReadFile(out); string(got) != "s@example.org list\n" {
		t.Errorf("env: %q", got)
	}
}

var now = time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)

func TestAppendFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "archive.mbox")
	for i, sender := range []string{"owner-x@example.org", ""} {
		res := AppendFile(context.Background(), path, Request{Message: strings.NewReader(msg + "no newline"), Sender: sender}, now, time.Second)
		if res.Status != Delivered {
			t.Fatalf("append %d: %v", i, res)
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

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("spool read error")
	}
	r.n--
	return copy(p, "line\n"), nil
}

func TestAppendFileRefusesAndRollsBack(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("From a Mon Jan  1 00:00:00 2026\nold\n\n"), 0o600)
	res := AppendFile(context.Background(), good, Request{Message: &failingReader{n: 3}}, now, time.Second)
	if res.Status != Deferred || !strings.Contains(res.Reason, "spool read error") {
		t.Errorf("failing reader: %v", res)
	}
	if fi, _ := os.Stat(good); fi.Size() != int64(len("From a Mon Jan  1 00:00:00 2026\nold\n\n")) {
		t.Errorf("partial write left %d bytes", fi.Size())
	}

	writable := filepath.Join(dir, "writable")
	os.WriteFile(writable, nil, 0o600)
	os.Chmod(writable, 0o620)
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	for _, tc := range []struct{ path, reason string }{
		{writable, "writable by group or others"},
		{link, "symbolic link"},
		{dir, "not a regular file"},
		{"relative/file", "not an absolute path"},
		{filepath.Join(dir, "nodir", "f"), "directory does not exist"},
	} {
		res := AppendFile(context.Background(), tc.path, Request{Message: strings.NewReader(msg)}, now, time.Second)
		if res.Status != Failed || !strings.Contains(res.Reason, tc.reason) {
			t.Errorf("%s: got %v, want failed with %q", tc.path, res, tc.reason)
		}
	}
}

func TestAppendFileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mbox")
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
		t.Errorf("flock held: %v", res)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	os.WriteFile(path+".lock", nil, 0o600)
	res = AppendFile(context.Background(), path, Request{Message: strings.NewReader(msg)}, now, 200*time.Millisecond)
	if res.Status != Deferred || !strings.Contains(res.Reason, ".lock") {
		t.Errorf("dotlock held: %v", res)
	}
	old := time.Now().Add(-2 * staleLock)
	os.Chtimes(path+".lock", old, old)
	if res := AppendFile(context.Background(), path, Request{Message: strings.NewReader(msg)}, now, time.Second); res.Status != Delivered {
		t.Errorf("stale dotlock not broken: %v", res)
	}
}

func TestRunAs(t *testing.T) {
	if _, err := RunAs("", 0); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("root without user: %v", err)
	}
	if c, err := RunAs("", 1000); c != nil || err != nil {
		t.Errorf("non-root without user: %v %v", c, err)
	}
	if _, err := RunAs("root", 0); err == nil {
		t.Error("program_user root accepted")
	}
	if c, err := RunAs("nobody", 0); err != nil || c == nil || c.UID == 0 {
		t.Errorf("nobody: %v %v", c, err)
	}
	if _, err := RunAs("no-such-user-fanmail", 0); err == nil {
		t.Error("unknown user accepted")
	}
}

func TestRunProgramAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change user")
	}
	cred, err := RunAs("nobody", 0)
	if err != nil {
		t.Skip(err)
	}
	res := RunProgram(context.Background(), "id -u", Request{Message: strings.NewReader(""), Cred: cred}, time.Second)
	want := fmt.Sprintf("exited 0: %d", cred.UID)
	if res.Status != Delivered || !strings.HasSuffix(res.Reason, want) {
		t.Errorf("got %v, want delivered ending %q", res, want)
	}
}
