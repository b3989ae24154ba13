package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/testutil"
	"fanmail/queuegroups"
)

// TestSocketServesTheQueue runs the queue tools' calls against a real
// spool over a real unix socket.
func TestSocketServesTheQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q, err := queuegroups.Open(queuegroups.Config{
		Groups: []queuegroups.GroupConfig{
			{Name: queuegroups.DefaultGroup, Dirs: []string{filepath.Join(dir, "q")}},
			{Name: queuegroups.ControlGroup, Dirs: []string{filepath.Join(dir, "c")}},
		},
		RetryMin: time.Minute, RetryMax: time.Hour, QueueReturn: time.Hour,
	}, nil) // runners never start: the message stays queued
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	id := queuegroups.NewIDSource().Next()
	m := &queuegroups.Message{ID: id, Received: time.Now(), Body: envelope.Bytes("Subject: x\r\n\r\nx\r\n"),
		Parts: []queuegroups.Part{{Envelopes: []envelope.Envelope{
			{Sender: "owner-l@example.org", Domain: "a.test", Recipients: []string{"u1@a.test", "u2@a.test"}},
		}}}}
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "control.sock")
	if _, err := Dial(sock); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Dial with no server = %v, want ErrNoServer", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Serve(ctx, sock, q, nil); err != nil {
		t.Fatal(err)
	}
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.Summary(5, 10)
	if err != nil || len(sum) != 2 || sum[0].Recipients != 2 || len(sum[0].List) != 1 || sum[0].List[0].ID != id {
		t.Fatalf("Summary = %+v, %v; want the default group with the one message", sum, err)
	}
	md, err := c.Show(id)
	if err != nil || len(md.Envelopes) != 1 || md.Envelopes[0].Sender != "owner-l@example.org" || len(md.Envelopes[0].Recipients) != 2 {
		t.Fatalf("Show = %+v, %v", md, err)
	}
	if _, err := c.Show("NOSUCHID"); err == nil || !strings.Contains(err.Error(), "no such message") {
		t.Errorf("Show of an unknown ID: %v, want the queue's own error", err)
	}
	if _, err := c.Flush("nosuchgroup", ""); err == nil || !strings.Contains(err.Error(), "no such queue group") {
		t.Errorf("Flush of an unknown group: %v", err)
	}
	if moved, err := c.Flush("", ""); err != nil || moved != 0 {
		t.Errorf("Flush = %d, %v; want nothing deferred to move", moved, err)
	}
	if dropped, err := c.Delete(id); err != nil || dropped != 2 {
		t.Errorf("Delete = %d, %v; want 2 pending recipients dropped", dropped, err)
	}
	if s := q.Stats(); s.Messages != 0 {
		t.Errorf("after Delete the queue holds %+v", s)
	}
}

// startSocket serves an empty spool on a socket in dir with the given
// admission, and returns the socket's path.
func startSocket(t *testing.T, dir string, allow func(uint32) bool, serverUID uint32) string {
	t.Helper()
	q, err := queuegroups.Open(queuegroups.Config{
		Groups: []queuegroups.GroupConfig{
			{Name: queuegroups.DefaultGroup, Dirs: []string{filepath.Join(t.TempDir(), "q")}},
			{Name: queuegroups.ControlGroup, Dirs: []string{filepath.Join(t.TempDir(), "c")}},
		},
		RetryMin: time.Minute, RetryMax: time.Hour, QueueReturn: time.Hour,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(context.Background()) })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sock := filepath.Join(dir, "control.sock")
	if err := serve(ctx, sock, q, nil, allow, serverUID); err != nil {
		t.Fatal(err)
	}
	return sock
}

func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want a socket with %04o", path, fi.Mode(), want)
	}
}

func TestSocketPrivateFromBind(t *testing.T) {
	t.Parallel()
	wantMode(t, startSocket(t, t.TempDir(), allowUID(uint32(os.Geteuid())), uint32(os.Geteuid())), 0o600)
	// The fallback where unshare is refused: bound in a private directory.
	dir := t.TempDir()
	sock := filepath.Join(dir, "fallback.sock")
	ln, err := listenInPrivateDir(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	wantMode(t, sock, 0o600)
	if c, err := net.Dial("unix", sock); err != nil {
		t.Errorf("connect to the renamed socket: %v", err)
	} else {
		c.Close()
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".control-*")); len(left) != 0 {
		t.Errorf("private directories left behind: %v", left)
	}
}

func TestAllowUID(t *testing.T) {
	t.Parallel()
	allow := allowUID(1000)
	for uid, want := range map[uint32]bool{0: true, 1000: true, 1001: false, 65534: false} {
		if got := allow(uid); got != want {
			t.Errorf("server uid 1000, caller %d: allowed %v, want %v", uid, got, want)
		}
	}
}

// A caller the check refuses gets an error that says who may call.
func TestPeerRefused(t *testing.T) {
	t.Parallel()
	me := uint32(os.Geteuid())
	sock := startSocket(t, t.TempDir(), func(uint32) bool { return false }, 4242)
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Summary(1, 1)
	want := fmt.Sprintf("permission denied: the queue socket answers root and uid 4242 (the server's user), not uid %d", me)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Summary by a refused caller: %v, want %q", err, want)
	}
}

// The real check, with a real other user: run as root, the test starts
// itself again as uid 65534 against a socket opened up to everyone.
func TestPeerCredOtherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	// t.TempDir's parent is private; the other user must reach the
	// socket and the binary.
	dir := testutil.OpenTempDir(t, "fanmail-peercred", 0o755)
	sock := startSocket(t, dir, allowUID(0), 0)
	if err := os.Chmod(sock, 0o666); err != nil { // a mistake the peer check must survive
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "control.test")
	testutil.CopyFile(t, exe, bin, 0o755)
	cmd := exec.Command(bin, "-test.run=^TestPeerCredHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "FANMAIL_CONTROL_HELPER_SOCK="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as uid 65534: %v\n%s", err, out)
	}
	want := "permission denied: the queue socket answers root and uid 0 (the server's user), not uid 65534"
	if !strings.Contains(string(out), want) {
		t.Errorf("uid 65534 got:\n%s\nwant %q", out, want)
	}
}

// TestPeerCredHelper is the client TestPeerCredOtherUser runs as another
// user; on its own it does nothing.
func TestPeerCredHelper(t *testing.T) {
	sock := os.Getenv("FANMAIL_CONTROL_HELPER_SOCK")
	if sock == "" {
		t.Skip("run by TestPeerCredOtherUser")
	}
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Summary(1, 1)
	fmt.Printf("Summary: %v\n", err)
}
