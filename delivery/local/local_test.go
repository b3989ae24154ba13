package local

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const msg = "Subject: hi\r\n\r\nFrom the list\r\n>From quoted\r\nbye\r\n"

// TestMain lets the test binary stand in for fanmail as the /file
// helper: AppendFile re-executes the running binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == FileHelperCommand {
		os.Exit(RunFileHelper(os.Args[2:], os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

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

func TestRunAs(t *testing.T) {
	if _, err := RunAs("", 0); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("root without user: %v", err)
	}
	if c, err := RunAs("", 1000); c != nil || err != nil {
		t.Errorf("non-root without user: %v %v", c, err)
	}
	// Not root: no user but the server's own can be had.
	if c, err := RunAs("nobody", 1000); c != nil || err == nil || !strings.Contains(err.Error(), "not root") {
		t.Errorf("non-root naming another user: %v %v", c, err)
	}
	if c, err := RunAs("nobody", 65534); c != nil || err != nil {
		t.Errorf("non-root naming itself: %v %v", c, err)
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

// asNobody skips the test unless it runs as root, which changing user
// needs, and returns the credentials of the user nobody.
func asNobody(t *testing.T) *Credentials {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to change user")
	}
	cred, err := RunAs("nobody", 0)
	if err != nil {
		t.Skip(err)
	}
	return cred
}

func TestRunProgramAsUser(t *testing.T) {
	cred := asNobody(t)
	res := RunProgram(context.Background(), "id -u", Request{Message: strings.NewReader(""), Cred: cred}, time.Second)
	want := fmt.Sprintf("exited 0: %d", cred.UID)
	if res.Status != Delivered || !strings.HasSuffix(res.Reason, want) {
		t.Errorf("got %v, want delivered ending %q", res, want)
	}
}

// TestRunProgramGroups: a program runs with the program user's own
// groups (from the group database) and none of the server's. The test
// process takes two extra supplementary groups for the duration, which
// would show in the child's `id -G` if they leaked.
func TestRunProgramGroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change user")
	}
	withServerGroups(t, 4242, 4343)
	users := []string{"nobody"}
	if u := userWithSupplementaryGroups(t); u != "" {
		users = append(users, u)
	}
	for _, name := range users {
		t.Run(name, func(t *testing.T) {
			cred, err := RunAs(name, 0)
			if err != nil {
				t.Skip(err)
			}
			res := RunProgram(context.Background(), `echo "gid=$(id -g) groups=$(id -G)"`, Request{Message: strings.NewReader(""), Cred: cred}, 5*time.Second)
			if res.Status != Delivered {
				t.Fatal(res)
			}
			_, out, _ := strings.Cut(res.Reason, "exited 0: ")
			gid, groups, _ := strings.Cut(strings.TrimPrefix(out, "gid="), " groups=")
			if gid != fmt.Sprint(cred.GID) {
				t.Errorf("primary group %s, want %d", gid, cred.GID)
			}
			var want []string
			for _, g := range cred.Groups {
				want = append(want, fmt.Sprint(g))
			}
			got := strings.Fields(groups)
			slices.Sort(want)
			slices.Sort(got)
			if diff := cmp.Diff(slices.Compact(want), slices.Compact(got)); diff != "" {
				t.Errorf("id -G of a program run as %s (-want +got):\n%s", name, diff)
			}
		})
	}
}

// userWithSupplementaryGroups names a non-root user that /etc/group
// lists as a member of some group, or "".
func userWithSupplementaryGroups(t *testing.T) string {
	data, err := os.ReadFile("/etc/group")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 || f[3] == "" {
			continue
		}
		for _, name := range strings.Split(f[3], ",") {
			if u, err := user.Lookup(name); err == nil && u.Uid != "0" {
				return name
			}
		}
	}
	return ""
}

// withServerGroups gives the test process (the server's stand-in) extra
// supplementary groups until the test ends. Not for parallel tests.
func withServerGroups(t *testing.T, gids ...int) {
	t.Helper()
	old, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setgroups(append(slices.Clone(old), gids...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setgroups(old) })
}
