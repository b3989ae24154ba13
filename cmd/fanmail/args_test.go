package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReorderArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{"serve --data-dir D --listen A", "--data-dir D serve --listen A", ""},
		{"--data-dir D serve --listen=A", "--data-dir D serve --listen=A", ""},
		{"queue --data-dir X --json", "--data-dir X queue --json", ""},
		{"queue show ID --json --config C", "--config C queue show --json ID", ""},
		{"member add L a@x --file F b@x", "member add --file F L a@x b@x", ""},
		{"member add L -f F", "member add -f F L", ""},
		{"aliases expand staff --explain", "aliases expand --explain staff", ""},
		{"aliases expand staff --aliases A --aliases=B", "aliases expand --aliases A --aliases=B staff", ""},
		{"member add L -- -odd@x", "member add -- L -odd@x", ""},
		{"list create L --owner O", "list create --owner O L", ""},
		{"list ls --help", "list ls --help", ""},
		{"--version", "--version", ""},
		{"internal-append-file -sender=a -date=1 -- /f", "internal-append-file -sender=a -date=1 -- /f", ""},
		{"nosuch --json", "nosuch --json", ""},
		{"aliases expand staff --explian", "", "aliases expand: unknown option --explian"},
		{"member add L --bogus x", "", "member add: unknown option --bogus"},
		{"--bogus list ls", "", "fanmail: unknown option --bogus"},
		{"member rm L --file", "", "member rm: option --file needs a value"},
	}
	app := newApp()
	for _, tt := range tests {
		got, err := reorderArgs(app, append([]string{"fanmail"}, strings.Fields(tt.in)...))
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", tt.in, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.in, err)
		default:
			if diff := cmp.Diff(append([]string{"fanmail"}, strings.Fields(tt.want)...), got); diff != "" {
				t.Errorf("%q (-want +got):\n%s", tt.in, diff)
			}
		}
	}
}

// A read-only command run where there is no data directory says which
// directory it looked for, and creates nothing.
func TestReadOnlyCommandsCreateNothing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	for _, args := range [][]string{
		{"list", "ls"},
		{"list", "show", "a@example.org"},
		{"member", "ls", "a@example.org"},
		{"queue"},
		{"queue", "show", "X"},
		{"dkim", "ls"},
		{"status"},
	} {
		_, _, err := run(t, missing, "", args...)
		want := "data directory " + missing + " does not exist"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("fanmail %s: error %v, want one containing %q", strings.Join(args, " "), err, want)
		}
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Fatalf("fanmail %s created %s", strings.Join(args, " "), missing)
		}
	}
	// An empty data directory: the queue is read without creating its
	// directories, and the listing says where it looked.
	empty := t.TempDir()
	stdout, stderr, err := run(t, empty, "", "queue", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "no server running on "+empty) || !strings.Contains(stdout, `"group": "default"`) {
		t.Errorf("queue in an empty data directory: stdout %q, stderr %q", stdout, stderr)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("queue listing created %v in %s", entries, empty)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var o bytes.Buffer
		app := newApp()
		app.Writer = &o
		if err := runApp(app, append([]string{"fanmail"}, args...)); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(o.String(), "fanmail ") || !strings.Contains(o.String(), "go1.") {
			t.Errorf("fanmail %s printed %q", args[0], o.String())
		}
	}
}
