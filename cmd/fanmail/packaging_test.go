package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The committed man page is the one the command definitions generate:
// after changing a command, run scripts/tasks.sh man.
func TestManPageIsCurrent(t *testing.T) {
	app := newApp()
	app.Setup()
	want, err := manPage(app)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", "contrib", "fanmail.8"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("contrib/fanmail.8 is out of date: run scripts/tasks.sh man")
	}
	for _, hidden := range []string{"internal-append-file", ".SH man"} {
		if strings.Contains(want, hidden) {
			t.Errorf("the man page shows the hidden command %q", hidden)
		}
	}
}

// contrib/fanmail.service passes systemd-analyze verify (with ExecStart
// pointing at the binary just built, which verify requires to exist)
// and has the hardening the README promises.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join("..", "..", "contrib", "fanmail.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"User=fanmail", "StateDirectory=fanmail", "ProtectSystem=strict", "ReadWritePaths=",
		"ExecReload=/bin/kill -HUP $MAINPID", "ExecStart=/usr/local/bin/fanmail --config /etc/fanmail/fanmail.toml serve",
	} {
		if !strings.Contains(string(unit), "\n"+line) {
			t.Errorf("fanmail.service lacks %s", line)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found: install Debian's systemd package to verify the unit")
	}
	dir := t.TempDir()
	local := strings.ReplaceAll(string(unit), "/usr/local/bin/fanmail", fanmailBinary(t))
	path := filepath.Join(dir, "fanmail.service")
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	// --man=no: the page is checked above, not installed here.
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		// verify exits 0 on directives it ignores, so any output fails.
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
