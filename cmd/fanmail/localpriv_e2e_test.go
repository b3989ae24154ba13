package main

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLocalTargetsRunAsProgramUser runs the real server as root with
// program_user = nobody and an alias whose targets are a |program that
// records its groups, a /file to create, and three /files that must be
// refused: one reached through a symlinked directory, one hard link,
// one only root may write. The server itself carries an extra
// supplementary group, which must not reach the program.
//
// Not parallel: it gives the test process (whose groups the server
// inherits) an extra group while it runs.
func TestLocalTargetsRunAsProgramUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the server must change user for its local targets")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip(err)
	}
	var uid, gid int
	fmt.Sscan(nobody.Uid, &uid)
	fmt.Sscan(nobody.Gid, &gid)
	wantGroups, err := nobody.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	old, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setgroups(append(slices.Clone(old), 4242)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setgroups(old) })

	// /tmp is world-writable, so the files live where every directory
	// up to / is writable by its owner alone, as fanmail requires.
	root := safeTempDir(t)
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	box := filepath.Join(root, "box") // nobody's own directory
	os.Mkdir(box, 0o755)
	os.Chown(box, uid, gid)
	os.Symlink(box, filepath.Join(root, "link"))
	victim := filepath.Join(root, "victim") // root's file, hard-linked into nobody's directory
	os.WriteFile(victim, []byte("victim\n"), 0o600)
	if err := os.Link(victim, filepath.Join(box, "hardlink")); err != nil {
		t.Fatal(err)
	}
	rootOnly := filepath.Join(box, "root-only")
	os.WriteFile(rootOnly, []byte("root\n"), 0o644)

	n := newFakeNet(t, []string{"d00.test"}, nil)
	aliases := filepath.Join(t.TempDir(), "aliases")
	writeFile(t, filepath.Dir(aliases), filepath.Base(aliases), fmt.Sprintf(`everyone: "|/usr/bin/id -G > %[1]s/groups.out",
	%[1]s/archive.mbox, %[2]s/link/archive.mbox, %[1]s/hardlink, %[1]s/root-only
`, box, root))
	cfg := n.newConfig(t, fmt.Sprintf(`
[aliases]
files = [%q]
local_domains = ["fanmail.test"]
program_user = "nobody"
program_timeout = "10s"
bounce_address = "postmaster@d00.test"
`, aliases))
	p := startFanmail(t, cfg)
	postTo(t, p.addr, "poster@d00.test", "everyone@fanmail.test", e2ePost)
	n.waitDelivered(t, 1, 30*time.Second, p) // the DSN for the three refused files, to bounce_address
	time.Sleep(200 * time.Millisecond)

	out, err := os.ReadFile(filepath.Join(box, "groups.out"))
	if err != nil {
		t.Fatalf("the |program did not run: %v", err)
	}
	got := strings.Fields(string(out))
	slices.Sort(got)
	slices.Sort(wantGroups)
	if !slices.Equal(got, slices.Compact(wantGroups)) {
		t.Errorf("the |program ran with groups %v, want nobody's own %v", got, wantGroups)
	}

	archive := filepath.Join(box, "archive.mbox")
	fi, err := os.Stat(archive)
	if err != nil {
		t.Fatalf("the /file was not written: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
		t.Errorf("%s is owned by uid %d, want nobody's %d", archive, st.Uid, uid)
	}
	if data, _ := os.ReadFile(archive); !bytes.Contains(data, []byte("Message-ID: <e2e-1@example.org>")) {
		t.Errorf("%s lacks the post:\n%s", archive, data)
	}
	for path, want := range map[string]string{victim: "victim\n", rootOnly: "root\n"} {
		if data, _ := os.ReadFile(path); string(data) != want {
			t.Errorf("%s was written: %q", path, data)
		}
	}

	dels := n.sinks["d00.test"].Deliveries()
	if len(dels) != 1 {
		t.Fatalf("%d messages to the bounce address, want one DSN", len(dels))
	}
	dsn := string(dels[0].Data)
	if c := strings.Count(dsn, "Status: 5.7.0"); c != 3 {
		t.Errorf("DSN has %d recipients with Status: 5.7.0, want 3:\n%s", c, dsn)
	}
	for _, want := range []string{"link on the path is a symbolic link", "has 2 hard links", "permission denied to uid"} {
		if !strings.Contains(strings.Join(strings.Fields(dsn), " "), want) {
			t.Errorf("DSN does not say %q:\n%s", want, dsn)
		}
	}
	if strings.Contains(dsn, archive) || strings.Contains(dsn, "groups.out") {
		t.Errorf("DSN reports a delivered target:\n%s", dsn)
	}
	p.stop(t)
}

// safeTempDir makes a directory, removed with the test, below the first
// of the package directory, /var/lib and / whose every directory up to /
// is writable by its owner alone (a checkout under /tmp is not), and
// skips the test when there is none.
func safeTempDir(t *testing.T) string {
	t.Helper()
	cwd, _ := os.Getwd()
	for _, base := range []string{cwd, "/var/lib", "/"} {
		if !ownerWritableOnly(base) {
			continue
		}
		dir, err := os.MkdirTemp(base, ".fanmail-test-safe-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	t.Skip("no directory whose parents are all writable by their owner alone (the package directory, /var/lib, /)")
	return ""
}

// ownerWritableOnly reports whether dir and every directory above it
// are writable by their owner alone.
func ownerWritableOnly(dir string) bool {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o022 != 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}
