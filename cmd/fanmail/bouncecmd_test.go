package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fanmail/bounces"
	"fanmail/lists"
)

// TestMemberBounceCommands: member ls --bouncing, member show and
// member enable, with the mistakes an operator makes named with the fix.
func TestMemberBounceCommands(t *testing.T) {
	dir := t.TempDir()
	runSteps(t, dir, []step{
		{args: []string{"list", "create", list}},
		{args: []string{"member", "add", list, "bob@example.com", "ok@example.com"}},
		{args: []string{"member", "ls", list, "--bouncing"}, stdout: out(""), stderr: out("no member of " + list + " has bounces\n")},
		{args: []string{"member", "show", list, "ok@example.com"}, stdout: out("member:       ok@example.com\nlist:         " + list +
			"\ndelivery:     enabled\nbounce score: 0 (threshold 5; a bounce older than 7d starts it again)\nlast bounce:  -\nno bounces recorded\n")},
		{args: []string{"member", "show", list, "eve@example.com"},
			wantErr: "eve@example.com is not a member of " + list + " (see the members with: fanmail member ls " + list + ")"},
		{args: []string{"member", "show", list}, wantErr: "member show: give a LIST and a member ADDR"},
		{args: []string{"member", "enable", "nope@example.org", "bob@example.com"}, wantErr: "list nope@example.org does not exist"},
	})
	// A bounce that disables bob, as listmail records it.
	store, err := lists.Open(filepath.Join(dir, "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)
	rc := bounces.Recipient{Address: "bob@example.com", Action: "failed", Status: "5.1.1", Severity: bounces.Hard,
		Diagnostic: "550 5.1.1 no such user", RemoteMTA: "mx.example.com", Evidence: "Diagnostic-Code: smtp; 550 5.1.1 no such user\nStatus: 5.1.1"}
	p := bounces.DefaultPolicy()
	p.Threshold = 1
	_, _, err = store.RecordBounce(context.Background(), list, rc.Address, lists.BounceEvent{At: at, Source: "dsn", Action: "failed",
		Status: rc.Status, Severity: string(rc.Severity), Diagnostic: rc.Diagnostic, RemoteMTA: rc.RemoteMTA, Evidence: rc.Evidence},
		func(s bounces.State) (bounces.State, bounces.Decision) { return p.Record(s, rc, at) })
	store.Close()
	if err != nil {
		t.Fatal(err)
	}
	stdout := mustRun(t, dir, "member", "ls", list, "--bouncing")
	if want := "bob@example.com  disabled by bounces  1  2026-03-05 12:00:00Z  0"; !strings.Contains(columnGap.ReplaceAllString(stdout, "  "), want) {
		t.Errorf("member ls --bouncing:\n%s\nwant a line %q", stdout, want)
	}
	stdout = mustRun(t, dir, "member", "show", list, "Bob@example.com")
	for _, want := range []string{"delivery: disabled by bounces", "disabled: 2026-03-05 12:00:00Z",
		"- 2026-03-05 12:00:00Z failed 5.1.1 hard (dsn), from mx.example.com", "| Status: 5.1.1", "scored: score 1 reached threshold 1"} {
		if !strings.Contains(squash(stdout), want) {
			t.Errorf("member show lacks %q:\n%s", want, stdout)
		}
	}
	runSteps(t, dir, []step{
		{args: []string{"member", "enable", list, "bob@example.com"}, stdout: out(list + ": delivery to bob@example.com enabled again; its bounce score starts from 0\n")},
		{args: []string{"member", "enable", list, "bob@example.com"}, stdout: out(list + ": delivery to bob@example.com was not disabled; its bounce score starts from 0\n")},
		{args: []string{"member", "ls", list, "--bouncing"}, stdout: out("")},
	})
}
