package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The global options work after the command on the real binary, and
// override the config file.
func TestServeWithOptionsAfterCommand(t *testing.T) {
	n := newFakeNet(t, []string{"example.test"}, nil)
	data := filepath.Join(t.TempDir(), "data")
	cfg := n.writeConfig(t, filepath.Join(t.TempDir(), "unused"), "")
	p := startFanmailArgs(t, nil, "serve", "--config", cfg, "--data-dir", data, "--listen", "127.0.0.1:0")
	if !strings.Contains(p.log.String(), "data_dir="+data) {
		t.Errorf("server did not use --data-dir %s:\n%s", data, p.log.String())
	}
	if _, err := os.Stat(filepath.Join(data, "lists.db")); err != nil {
		t.Errorf("no lists.db in --data-dir: %v", err)
	}
	out, err := exec.Command(fanmailBinary(t), "queue", "--data-dir", data, "--config", cfg, "--json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"group": "default"`) {
		t.Errorf("fanmail queue --data-dir D --json: %v\n%s", err, out)
	}
	p.stop(t)
}

func TestVersionBinary(t *testing.T) {
	out, err := exec.Command(fanmailBinary(t), "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "fanmail version ") {
		t.Errorf("fanmail --version: %v %q", err, out)
	}
}
