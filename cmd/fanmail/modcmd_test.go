package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"

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
	return holdTestPostFrom(t, dir, sender, "poster@example.net")
}

// holdTestPostFrom is holdTestPost with a From: address of its own.
func holdTestPostFrom(t *testing.T, dir, sender, from string) int64 {
	t.Helper()
	s, err := lists.Open(filepath.Join(dir, "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	received := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	id, err := s.AddPost(context.Background(), lists.Post{List: list, State: lists.PostHeld,
		Reason: "the sender is not a member", QueueID: "QTEST", Received: received, Sender: sender,
		From: from, Subject: "A question", Helo: "mx.example.net", RemoteAddr: "192.0.2.7",
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
		{args: []string{"mod", "approve"}, wantErr: "mod approve: give one or more post IDs"},
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

// openTestStore opens the data directory's store, closed when the test
// ends.
func openTestStore(t *testing.T, dir string) *lists.Store {
	t.Helper()
	s, err := lists.Open(filepath.Join(dir, "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestModDecideMany: several IDs are decided each on its own; a missing,
// already decided or malformed one is reported and fails the command,
// but the others are decided; --list picks a list's held posts, all or
// from one address, and skips what was decided meanwhile.
func TestModDecideMany(t *testing.T) {
	dir := t.TempDir()
	const other = "other@lists.example.org"
	runSteps(t, dir, []step{{args: []string{"list", "create", list}}, {args: []string{"list", "create", other}}})
	for range 4 {
		holdTestPost(t, dir, "poster@example.net") // 1-4
	}
	runSteps(t, dir, []step{
		{args: []string{"mod", "reject", "--reason", "spam", "2"}},
		{args: []string{"mod", "discard", "1", "2", "x", "9", "3", "1"},
			stdout: out("discarded post 1 to announce@lists.example.org\n" +
				"discarded post 3 to announce@lists.example.org\n" +
				"discarded 2 of 5 posts (3 failed)\n"),
			stderr: out(`mod discard: argument 3 "x" is not a post ID (a number from: fanmail mod ls)` + "\n" +
				"mod discard: post 2 is already rejected by " + cliUser() + ": post already decided: nothing changed\n" +
				"mod discard: no held post 9: it was distributed, discarded or expired, or never existed (see: fanmail mod ls)\n"),
			wantErr: "mod discard: 3 posts of 5 not discarded (see above)"},
		{args: []string{"mod", "approve", "4", "5"}, wantErr: "1 post of 2 not approved",
			stdout: out("approved post 4 to announce@lists.example.org\n" +
				"approved 1 of 2 posts (1 failed): the server distributes them now, or at its next start\n")},
		{args: []string{"mod", "approve", "4"}, wantErr: "mod approve: post 4 is already approved by " + cliUser()},
	})

	// A spam wave: three posts from one address (in From: or as the
	// envelope sender), two from others, one to another list.
	spam := []int64{
		holdTestPostFrom(t, dir, "bounce@spam.example", "Offer@spam.example"),
		holdTestPostFrom(t, dir, "offer@spam.example", "poster@example.net"),
	}
	good := holdTestPost(t, dir, "poster@example.net")
	spam = append(spam, holdTestPostFrom(t, dir, "offer@spam.example", "offer@spam.example"))
	s := openTestStore(t, dir)
	ctx := context.Background()
	elsewhere, err := s.AddPost(ctx, lists.Post{List: other, State: lists.PostHeld, Sender: "offer@spam.example",
		Received: time.Now(), Expires: time.Now().Add(time.Hour)}, strings.NewReader("Subject: x\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	runSteps(t, dir, []step{
		{args: []string{"mod", "discard", "--list", list, "--from", "<OFFER@spam.example>"},
			stdout: out(fmt.Sprintf("discarded post %[1]d to %[4]s\ndiscarded post %[2]d to %[4]s\ndiscarded post %[3]d to %[4]s\n",
				spam[0], spam[1], spam[2], list) + "discarded 3 of 3 posts\n")},
		{args: []string{"mod", "discard", "--list", list, "--from", "offer@spam.example"}, stdout: out(""),
			stderr: out("no held posts from offer@spam.example to " + list + "\n")},
		{args: []string{"mod", "discard", "--list", list}, wantErr: "mod discard: with --list, say which posts: --all"},
		{args: []string{"mod", "discard", "--all"}, wantErr: "mod discard: --all and --from need --list LIST"},
		{args: []string{"mod", "discard", "--list", list, "--all", "3"}, wantErr: "give post IDs or --list, not both"},
		{args: []string{"mod", "discard", "--list", list, "--all", "--from", "a@b.example"}, wantErr: "give --all or --from ADDR, not both"},
		{args: []string{"mod", "discard", "--list", list, "--from", "bad@@x"}, wantErr: `mod discard: --from "bad@@x": more than one @`},
		{args: []string{"mod", "discard", "--list", "nope@example.org", "--all"}, wantErr: "list nope@example.org does not exist"},
		{args: []string{"mod", "approve", "--list", list, "--all"},
			stdout: out(fmt.Sprintf("approved post %d to %s\n", good, list) +
				"approved 1 of 1 post: the server distributes them now, or at its next start\n")},
	})
	if p, err := s.GetPost(ctx, elsewhere); err != nil || p.State != lists.PostHeld {
		t.Errorf("the post to the other list = %+v, %v; want still held", p, err)
	}
}

// TestModDecideManySkipsDecidedMeanwhile: a post --list found held that
// a moderator decides before the command reaches it is skipped, not a
// failure. decideIDs is driven with the IDs --list would have read, one
// of them decided in between.
func TestModDecideManySkipsDecidedMeanwhile(t *testing.T) {
	dir := t.TempDir()
	runSteps(t, dir, []step{{args: []string{"list", "create", list}}})
	a, b := holdTestPost(t, dir, "poster@example.net"), holdTestPost(t, dir, "poster@example.net")
	s := openTestStore(t, dir)
	var o, e strings.Builder
	app := newApp()
	app.Writer, app.ErrWriter = &o, &e
	app.Commands = append(app.Commands, &cli.Command{Name: "race", Action: func(c *cli.Context) error {
		// A moderator's reply approves b between the listing and the
		// decisions.
		if _, err := s.Decide(c.Context, b, lists.Decision{Action: "approve", By: "mod@example.org"}); err != nil {
			return err
		}
		return decideIDs(c, s, "discard", selector{ids: []int64{a, b}, list: list}, lists.Decision{Action: "discard", By: "cli"})
	}})
	if err := runApp(app, []string{"fanmail", "--data-dir", dir, "race"}); err != nil {
		t.Fatalf("race: %v\n%s", err, e.String())
	}
	want := fmt.Sprintf("discarded post %d to %s\nskipped post %d: decided meanwhile (post %d is already approved by mod@example.org)\n"+
		"discarded 1 of 2 posts (1 skipped)\n", a, list, b, b)
	if diff := cmp.Diff(want, o.String()); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
}

// TestModRelease: the claims of a named node are listed with when it
// was last seen; a running node's are never released, a gone or
// stopped one's only with --force, and so are those of a node that never
// reported; a name that neither reported nor holds a claim is an error;
// a claim of another node, or one without a node, stays; a claim that
// changed since the listing is a failure.
func TestModRelease(t *testing.T) {
	dir := t.TempDir()
	runSteps(t, dir, []step{{args: []string{"list", "create", list}}})
	s := openTestStore(t, dir)
	ctx := context.Background()
	held := holdTestPost(t, dir, "poster@example.net")
	approved := holdTestPost(t, dir, "poster@example.net")
	rejected := holdTestPost(t, dir, "poster@example.net")
	mine := holdTestPost(t, dir, "poster@example.net")
	unnamed := holdTestPost(t, dir, "poster@example.net")
	if got, err := s.ClaimNotice(ctx, held, "0KXJ5V3F8A1B2C30.mx2"); err != nil || !got {
		t.Fatal(got, err)
	}
	for _, c := range []struct {
		id     int64
		action string
		claim  string
	}{
		{approved, "approve", "0KXJ5V3F8A1B2C31.mx2"},
		{rejected, "reject", "0KXJ5V3F8A1B2C32.mx2"},
		{mine, "approve", "0KXJ5V3F8A1B2C33.mx1"},
		{unnamed, "approve", "0KXJ5V3F8A1B2C34"},
	} {
		if _, err := s.Decide(ctx, c.id, lists.Decision{Action: c.action, By: "cli"}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Claim(ctx, c.id, c.claim); err != nil || !got {
			t.Fatal(got, err)
		}
	}
	config := filepath.Join(dir, "fanmail.toml")
	if err := os.WriteFile(config, []byte("[node]\nname = \"mx1\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	table := "ID  LIST                        STATE     CLAIM (QUEUE ID)      THE NODE WAS\n" +
		fmt.Sprintf("%d   %s  held      0KXJ5V3F8A1B2C30.mx2  notifying the moderators\n", held, list) +
		fmt.Sprintf("%d   %s  accepted  0KXJ5V3F8A1B2C31.mx2  distributing the post\n", approved, list) +
		fmt.Sprintf("%d   %s  rejected  0KXJ5V3F8A1B2C32.mx2  telling the poster of the rejection\n", rejected, list)
	runSteps(t, dir, []step{
		{args: []string{"mod", "release"}, wantErr: "mod release: give --node NAME"},
		{args: []string{"mod", "release", "mx2"}, wantErr: `mod release: unexpected argument "mx2"; give --node NAME`},
		{args: []string{"--config", config, "mod", "release", "--node", "mx1", "--force"},
			wantErr: "mod release: mx1 is this node's own name ([node] name): start fanmail serve here instead"},
		// A name that neither reported nor holds a claim: a typo, most likely.
		{args: []string{"mod", "release", "--node", "mx9", "--force"}, stdout: out("node mx9 never reported to this list store\n"),
			wantErr: "mod release: nothing to release: no node named mx9 ever reported to this list store (none did), and no claim names it; check the name"},
		// mx2 holds claims and never reported (a fanmail from before the
		// heartbeat): they are listed, and released only with --force.
		{args: []string{"mod", "release", "--node", "mx2"}, stdout: out("node mx2 never reported to this list store\n" + table),
			wantErr: "mod release: nothing released. Node mx2 never reported to this list store: it last ran a fanmail from before nodes reported (or the name is wrong), so fanmail cannot tell whether it is running"},
	})
	// mx2 runs: refused, --force or not, and the listing says when it
	// was last seen.
	now := time.Now()
	if err := s.NodeStarted(ctx, "mx2", "v1", now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, "mx2", now); err != nil {
		t.Fatal(err)
	}
	seen := now.UTC().Format(time.RFC3339)
	for _, force := range []string{"", "--force"} {
		args := []string{"mod", "release", "--node", "mx2"}
		if force != "" {
			args = append(args, force)
		}
		stdout, _, err := run(t, dir, "", args...)
		if err == nil || !strings.Contains(err.Error(), "nothing released, --force or not: node mx2 is running") {
			t.Errorf("mod release %s of a running node: %v", force, err)
		}
		if first, rest, _ := strings.Cut(stdout, "\n"); !strings.HasPrefix(first, "node mx2: last seen "+seen+" (") ||
			!strings.HasSuffix(first, " ago), running") || rest != table {
			t.Errorf("mod release %s of a running node: stdout\n%s", force, stdout)
		}
	}
	// A name with no claims, when nodes did report, lists them.
	runSteps(t, dir, []step{{args: []string{"mod", "release", "--node", "mx9"},
		wantErr: "no node named mx9 ever reported to this list store (nodes that did: mx2), and no claim names it"}})
	// mx2 stops cleanly: down, but its spool may hold a claim's message.
	if err := s.NodeStopped(ctx, "mx2", now); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := run(t, dir, "", "mod", "release", "--node", "mx2")
	if err == nil || !strings.Contains(err.Error(), "nothing released. Node mx2 is not running, but its spool may still hold the message") ||
		!strings.Contains(err.Error(), "then run again with --force") {
		t.Errorf("mod release of a node stopped cleanly: %v", err)
	}
	if first, rest, _ := strings.Cut(stdout, "\n"); !strings.HasPrefix(first, "node mx2: last seen "+seen+" (") ||
		!strings.HasSuffix(first, " ago), stopped cleanly") || rest != table {
		t.Errorf("mod release of a node stopped cleanly: stdout\n%s", stdout)
	}
	// Nothing changed without --force, nor for a running node with it.
	if claimed, err := s.Posts(ctx, lists.PostFilter{Claimed: true}); err != nil || len(claimed) != 5 {
		t.Fatalf("claimed after a listing = %d posts, %v; want all 5", len(claimed), err)
	}
	// mx2 crashed long ago (it started again, then fell silent): gone,
	// and --force releases.
	stale := now.Add(-2 * lists.GoneAfter)
	if err := s.NodeStarted(ctx, "mx2", "v1", stale); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = run(t, dir, "", "mod", "release", "--node", "mx2", "--force")
	if err != nil {
		t.Fatal(err)
	}
	want := "node mx2: last seen " + stale.UTC().Format(time.RFC3339) + " (1m30s ago), gone: no heartbeat for over 45s, " +
		"and it did not stop cleanly (crashed, killed, or cut off from the list store)\n" +
		fmt.Sprintf("released post %d to %s (held, claim 0KXJ5V3F8A1B2C30.mx2): the next node to look takes it over\n", held, list) +
		fmt.Sprintf("released post %d to %s (accepted, claim 0KXJ5V3F8A1B2C31.mx2): the next node to look takes it over\n", approved, list) +
		fmt.Sprintf("released post %d to %s (rejected, claim 0KXJ5V3F8A1B2C32.mx2): the next node to look takes it over\n", rejected, list) +
		"released 3 of 3 claims of node mx2\n"
	// The age is taken when the command runs, a moment after now.
	stdout = regexp.MustCompile(`\(1m3[0-2]s ago\)`).ReplaceAllString(stdout, "(1m30s ago)")
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("mod release --force of a gone node (-want +got):\n%s", diff)
	}
	runSteps(t, dir, []step{
		{args: []string{"mod", "release", "--node", "mx2", "--force"}, stderr: out("node mx2 holds no claims on held posts\n")},
	})
	claimed, err := s.Posts(ctx, lists.PostFilter{Claimed: true})
	if err != nil {
		t.Fatal(err)
	}
	var left []int64
	for _, p := range claimed {
		left = append(left, p.ID)
	}
	if diff := cmp.Diff([]int64{mine, unnamed}, left); diff != "" {
		t.Errorf("claims left (-want +got):\n%s", diff)
	}

	// A claim that changes between listing and release (the node was
	// alive after all) is reported and fails the command.
	if _, err := s.Decide(ctx, holdTestPost(t, dir, "poster@example.net"), lists.Decision{Action: "approve", By: "cli"}); err != nil {
		t.Fatal(err)
	}
	posts, err := s.Posts(ctx, lists.PostFilter{State: lists.PostAccepted})
	if err != nil {
		t.Fatal(err)
	}
	last := posts[len(posts)-1]
	last.Claim = "0KXJ5V3F8A1B2C35.mx3"
	var o, e strings.Builder
	app := newApp()
	app.Writer, app.ErrWriter = &o, &e
	app.Commands = append(app.Commands, &cli.Command{Name: "race", Action: func(c *cli.Context) error {
		return releaseClaims(c, s, "mx3", []lists.Post{last})
	}})
	err = runApp(app, []string{"fanmail", "--data-dir", dir, "race"})
	if err == nil || !strings.Contains(err.Error(), "1 claim of 1 not released") ||
		!strings.Contains(e.String(), "the claim changed or the post is gone since it was listed: is node mx3 still running?") {
		t.Errorf("release of a changed claim: %v\n%s", err, e.String())
	}
}
