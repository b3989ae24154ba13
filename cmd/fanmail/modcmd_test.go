package main

import (
	"context"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"fanmail/lists"
)

func TestListSet(t *testing.T) {
	dir := t.TempDir()
	runSteps(t, dir, []step{
		{args: []string{"list", "create", list}},
		{args: []string{"list", "set", list, "posting=moderated", "subject_prefix=[announce]", "footer=-- \nbye"},
			stdout: out("announce@lists.example.org: posting = moderated\n" +
				`announce@lists.example.org: subject_prefix = "[announce]"` + "\n" +
				`announce@lists.example.org: footer = "-- \nbye"` + "\n")},
		{args: []string{"list", "set", list, "posting=everyone", "hold_days=0", "colour=red", "dmarc", "nonmember_action=reject"},
			wantErr: "list set: 4 bad settings, nothing applied:\n" +
				`posting="everyone": accepted values are members, open, moderated, announce` + "\n" +
				`hold_days="0": out of range or not a number; want a whole number of days from 1 to 365` + "\n" +
				`unknown key "colour" (the keys are ` + strings.Join(lists.SettingKeys(), ", ") + `)` + "\n" +
				`"dmarc" is not KEY=VALUE (the keys are ` + strings.Join(lists.SettingKeys(), ", ") + `)`},
		{args: []string{"list", "set", list}, wantErr: "list set: give a LIST and at least one KEY=VALUE"},
		{args: []string{"list", "set", "nope@example.org", "posting=open"},
			wantErr: "list nope@example.org does not exist (create it with: fanmail list create nope@example.org)"},
		// Back to the default: shown as the default again.
		{args: []string{"list", "set", list, "posting=members", "subject_prefix="}},
	})
	stdout := mustRun(t, dir, "list", "show", list)
	for _, want := range []string{
		"  posting  members  (default)\n",
		"  nonmember_action  hold  (default)\n", // the failed set applied nothing
		`  subject_prefix  ""  (default)` + "\n",
		`  footer  "-- \nbye"  (set)` + "\n",
	} {
		if !strings.Contains(columnGap.ReplaceAllString(stdout, "  "), want) {
			t.Errorf("list show lacks %q:\n%s", want, stdout)
		}
	}
}

func TestModeratorCommands(t *testing.T) {
	runSteps(t, t.TempDir(), []step{
		{args: []string{"list", "create", list}},
		{args: []string{"moderator", "add", list, "mod@example.org", "<Boss@EXAMPLE.org>", "mod@example.org"},
			stdout: out("added 2 moderators to announce@lists.example.org (0 already present, 1 duplicate in the input)\n")},
		{args: []string{"moderator", "add", list, "ok@example.org", "bad@@example.org", "nodomain"},
			wantErr: "moderator add: 2 bad addresses, nothing applied:\n" +
				`argument 3 "bad@@example.org": more than one @ (quote the local part if it really contains @) (fix the address or leave it out)` + "\n" +
				`argument 4 "nodomain": missing @ (fix the address or leave it out)`},
		{args: []string{"moderator", "ls", list}, stdout: out("Boss@example.org\nmod@example.org\n")},
		{args: []string{"moderator", "rm", list, "mod@example.org", "x@example.org"},
			stdout: out("removed 1 moderator from announce@lists.example.org (1 was not a moderator)\n")},
		{args: []string{"moderator", "ls", list}, stdout: out("Boss@example.org\n")},
		{args: []string{"moderator", "add", list}, wantErr: "moderator add: give a LIST and addresses"},
		{args: []string{"moderator", "ls", "nope@example.org"},
			wantErr: "list nope@example.org does not exist (create it with: fanmail list create nope@example.org)"},
	})
}

// holdTestPost stores a held post in the data directory's store, as the
// server does, and returns its ID.
func holdTestPost(t *testing.T, dir, sender string) int64 {
	t.Helper()
	s, err := lists.Open(filepath.Join(dir, "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	received := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	id, err := s.AddPost(context.Background(), lists.Post{List: list, State: lists.PostHeld,
		Reason: "the sender is not a member", QueueID: "QTEST", Received: received, Sender: sender,
		From: "poster@example.net", Subject: "A question", Helo: "mx.example.net", RemoteAddr: "192.0.2.7",
		Expires: received.Add(14 * 24 * time.Hour)},
		strings.NewReader("From: Poster <poster@example.net>\r\nSubject: A question\r\n\r\nHello?\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestModCommands(t *testing.T) {
	dir := t.TempDir()
	runSteps(t, dir, []step{{args: []string{"list", "create", list}}})
	runSteps(t, dir, []step{{args: []string{"mod", "ls"}, stdout: out(""), stderr: out("no held posts\n")}})
	a := holdTestPost(t, dir, "poster@example.net")
	b := holdTestPost(t, dir, "")
	c := holdTestPost(t, dir, "poster@example.net")
	if a != 1 || b != 2 || c != 3 {
		t.Fatalf("post IDs %d %d %d", a, b, c)
	}
	stdout := mustRun(t, dir, "mod", "ls", list)
	row := regexp.MustCompile(`(?m)^1 +announce@lists\.example\.org +held +2026-05-01 \d\d:00 +poster@example\.net +66 +A question +the sender is not a member$`)
	if !strings.HasPrefix(stdout, "ID  LIST") || !row.MatchString(stdout) || strings.Count(stdout, "\n") != 4 {
		t.Errorf("mod ls:\n%s", stdout)
	}
	stdout = mustRun(t, dir, "mod", "show", "1")
	for _, want := range []string{"post:     1\n", "state:    held\n", "why:      the sender is not a member\n",
		"size:     66 bytes\n", "queue ID QTEST", "\nFrom: Poster <poster@example.net>\nSubject: A question\n\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("mod show lacks %q:\n%s", want, stdout)
		}
	}
	me := "cli"
	if u, err := user.Current(); err == nil {
		me = "cli:" + u.Username
	}
	runSteps(t, dir, []step{
		{args: []string{"mod", "approve", "1"},
			stdout: out("approved post 1 to announce@lists.example.org: the server distributes it now, or at its next start\n")},
		{args: []string{"mod", "approve", "1"}, wantErr: "mod approve: post 1 is already approved by " + me + ": post already decided: nothing changed"},
		{args: []string{"mod", "reject", "1"}, wantErr: "mod reject: post 1 is already approved by " + me},
		{args: []string{"mod", "reject", "2", "--reason", "off topic"},
			stdout: out("rejected post 2 to announce@lists.example.org: its sender is the null sender, so nobody is told\n")},
		{args: []string{"mod", "reject", "--reason=not here", "3"},
			stdout: out("rejected post 3 to announce@lists.example.org: the server tells poster@example.net once\n")},
		{args: []string{"mod", "discard", "3"}, wantErr: "post 3 is already rejected by " + me},
		{args: []string{"mod", "discard", "9"}, wantErr: "no held post 9: it was distributed, discarded or expired, or never existed (see: fanmail mod ls)"},
		{args: []string{"mod", "show", "x"}, wantErr: `mod show: "x" is not a post ID (a number from: fanmail mod ls)`},
		{args: []string{"mod", "approve"}, wantErr: "mod approve: give exactly one post ID"},
		{args: []string{"mod", "discard", "1", "--reason", "x"}, wantErr: "mod discard: unknown option --reason"},
		{args: []string{"mod", "ls", "nope@example.org"}, wantErr: "list nope@example.org does not exist"},
	})
	holdTestPost(t, dir, "poster@example.net")
	runSteps(t, dir, []step{
		{args: []string{"mod", "discard", "4"}, stdout: out("discarded post 4 to announce@lists.example.org\n")},
		{args: []string{"mod", "show", "4"}, wantErr: "no held post 4"},
	})
	s, err := lists.Open(filepath.Join(dir, "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := s.GetPost(context.Background(), 3)
	if err != nil || p.State != lists.PostRejected || p.Note != "not here" {
		t.Errorf("post 3 = %+v, %v; want rejected with the reason given", p, err)
	}
}
