package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/lists"
)

// TestNodeLs: a store no node reported to says so; otherwise every
// node is listed with its version, start, last heartbeat and state.
func TestNodeLs(t *testing.T) {
	dir := t.TempDir()
	runSteps(t, dir, []step{
		{args: []string{"list", "create", list}},
		{args: []string{"node", "ls", "x"}, wantErr: "node ls: takes no arguments"},
		{args: []string{"node", "ls"}, stdout: out(""),
			stderr: out("no node has reported to this list store: none has run fanmail serve on it since nodes report\n")},
	})
	s := openTestStore(t, dir)
	ctx := context.Background()
	now := time.Now()
	at := func(d time.Duration) time.Time { return now.Add(d).Truncate(time.Second) }
	for _, n := range []struct {
		name    string
		started time.Time
		stopped bool
	}{
		{"mx1", at(-time.Minute), false},
		{"mx2", at(-time.Hour), true},
		{"mx3", at(-2 * time.Hour), false},
	} {
		if err := s.NodeStarted(ctx, n.name, "v1", n.started); err != nil {
			t.Fatal(err)
		}
		if n.stopped {
			if err := s.NodeStopped(ctx, n.name, at(-30*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Heartbeat(ctx, "mx1", at(0)); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := run(t, dir, "", "node", "ls")
	if err != nil {
		t.Fatal(err)
	}
	f := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	var got [][]string
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 {
			fields = append(fields[:4], strings.Join(fields[5:], " ")) // the age depends on when the command ran
		}
		got = append(got, fields)
	}
	want := [][]string{
		{"NODE", "VERSION", "STARTED", "LAST", "AGO STATE"},
		{"mx1", "v1", f(at(-time.Minute)), f(at(0)), "running"},
		{"mx2", "v1", f(at(-time.Hour)), f(at(-30 * time.Minute)), "stopped cleanly"},
		{"mx3", "v1", f(at(-2 * time.Hour)), f(at(-2 * time.Hour)), "gone (no heartbeat for over " + lists.GoneAfter.String() + ")"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("node ls (-want +got):\n%s\n%s", diff, stdout)
	}
}
