package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/lists"
)

// openTestRequests opens requests in the data directory's store as mail
// to LIST-request does: each address asks to subscribe to list and, if
// confirmed, confirms (then, the list being moderated, it waits for a
// moderator); ttl < 0 makes one that has expired.
func openTestRequests(t *testing.T, dir string, reqs []testRequest) {
	t.Helper()
	ctx := context.Background()
	s, err := lists.Open(filepath.Join(dir, "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, r := range reqs {
		token, _, err := s.OpenRequest(ctx, r.list, r.addr, r.action, r.ttl)
		if err != nil {
			t.Fatal(err)
		}
		if r.confirmed {
			if _, err := s.UseConfirmToken(ctx, r.list, token, r.addr, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
}

type testRequest struct {
	list, addr string
	action     lists.RequestAction
	ttl        time.Duration
	confirmed  bool
}

func TestMemberRequestCommands(t *testing.T) {
	dir := t.TempDir()
	const other = "other@lists.example.org"
	runSteps(t, dir, []step{
		{args: []string{"list", "create", list}},
		{args: []string{"list", "create", other}},
		{args: []string{"list", "set", list, "subscribe_policy=moderate"}},
		{args: []string{"moderator", "add", list, "mod@example.org"}},
		{args: []string{"member", "requests", list}, stdout: out(""), stderr: out("no open requests on " + list + "\n")},
	})
	openTestRequests(t, dir, []testRequest{
		{list, "bob@example.net", lists.RequestSubscribe, time.Hour, true},                 // 1: waits for a moderator
		{list, "carol@example.net", lists.RequestSubscribe, time.Hour, false},              // 2: waits for carol
		{other, "dave@example.net", lists.RequestSubscribe, time.Hour, false},              // 3: another list's
		{list, "erin@example.net", lists.RequestSubscribe, -time.Minute, false},            // 4: expired
		{list, "frank@example.net", lists.RequestUnsubscribe, time.Hour, false},            // 5: waits for frank
		{list, "gina@example.net", lists.RequestSubscribe, time.Hour, true},                // 6: waits for a moderator
		{list, "hal@example.net", lists.RequestSubscribe, time.Hour, true},                 // 7: waits for a moderator
		{list, "ivy@example.net", lists.RequestSubscribe, time.Hour, true},                 // 8: added by hand below
		{list, "jo@example.net", lists.RequestEnable, time.Hour, false},                    // 9: waits for jo
		{list, "kim@example.net", lists.RequestSubscribe, 2 * time.Hour, false},            // 10
		{other, "lee@example.net", lists.RequestSubscribe, time.Hour, false},               // 11
		{list, "mo@example.net", lists.RequestSubscribe, time.Hour + time.Minute, false},   // 12
		{list, "ned@example.net", lists.RequestSubscribe, time.Hour + 2*time.Minute, true}, // 13
	})
	stdout := mustRun(t, dir, "member", "requests", list)
	var ids []string
	for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")[1:] {
		ids = append(ids, strings.Fields(line)[0])
	}
	// Oldest first; the expired one (4) and the other list's are not shown.
	if diff := cmp.Diff([]string{"1", "2", "5", "6", "7", "8", "9", "10", "12", "13"}, ids); diff != "" {
		t.Errorf("member requests IDs (-want +got):\n%s\n%s", diff, stdout)
	}
	stamp := `\d{4}-\d\d-\d\d \d\d:\d\d`
	for _, re := range []string{
		`^ID +ADDRESS +ACTION +WAITS FOR +CREATED +EXPIRES\n`,
		`(?m)^1 +bob@example\.net +subscribe +moderator +` + stamp + ` +` + stamp + `$`,
		`(?m)^2 +carol@example\.net +subscribe +address +` + stamp + ` +` + stamp + `$`,
		`(?m)^5 +frank@example\.net +unsubscribe +address +`,
		`(?m)^9 +jo@example\.net +enable +address +`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("member requests lacks %s:\n%s", re, stdout)
		}
	}
	runSteps(t, dir, []step{{args: []string{"member", "add", list, "ivy@example.net"}}})
	runSteps(t, dir, []step{
		{args: []string{"member", "approve", list, "1"},
			stdout: out("approved request 1: bob@example.net is now a member of " + list + "; the server sends the welcome within a minute, or at its next start\n")},
		{args: []string{"member", "approve", list, "1"},
			wantErr: "member approve: no open request 1 on " + list + ": it was approved, rejected or expired, or never existed (see: fanmail member requests " + list + ")"},
		{args: []string{"member", "approve", list, "2"},
			wantErr: "member approve: request 2 (subscribe carol@example.net) waits for the address's own confirmation, which only a reply from carol@example.net gives (double opt-in); to change the membership without it: fanmail member add " + list + " carol@example.net"},
		{args: []string{"member", "approve", list, "5"},
			wantErr: "to change the membership without it: fanmail member rm " + list + " frank@example.net"},
		{args: []string{"member", "approve", list, "9"},
			wantErr: "to change the membership without it: fanmail member enable " + list + " jo@example.net"},
		{args: []string{"member", "approve", list, "3"},
			wantErr: "member approve: request 3 is for list " + other + ", not " + list + " (see: fanmail member requests " + other + ")"},
		{args: []string{"member", "reject", list, "4"},
			wantErr: "member reject: request 4 (subscribe erin@example.net) expired at "},
		{args: []string{"member", "approve", list, "4"}, wantErr: ": nothing changed; the address can ask again"},
		{args: []string{"member", "approve", list, "99"}, wantErr: "member approve: no open request 99 on " + list},
		{args: []string{"member", "approve", list, "x"},
			wantErr: `member approve: "x" is not a request ID (a number from: fanmail member requests ` + list + ")"},
		{args: []string{"member", "approve", list, "0"}, wantErr: `member approve: "0" is not a request ID`},
		{args: []string{"member", "reject", list},
			wantErr: "member reject: give a LIST and request IDs, e.g. fanmail member reject announce@lists.example.org 7 (see them with: fanmail member requests LIST)"},
		{args: []string{"member", "requests"}, wantErr: "member requests: give exactly one LIST"},
		{args: []string{"member", "requests", "nope@example.org"},
			wantErr: "list nope@example.org does not exist (create it with: fanmail list create nope@example.org)"},
		{args: []string{"member", "approve", "nope@example.org", "6"}, wantErr: "list nope@example.org does not exist"},
		// Several IDs: each is decided, each failure named.
		{args: []string{"member", "approve", list, "6", "2", "7", "8"},
			stdout: out("approved request 6: gina@example.net is now a member of " + list + "; the server sends the welcome within a minute, or at its next start\n" +
				"approved request 7: hal@example.net is now a member of " + list + "; the server sends the welcome within a minute, or at its next start\n" +
				"approved request 8 (subscribe ivy@example.net) on " + list + ": nothing to change, the request is closed\n"),
			wantErr: "member approve: request 2 (subscribe carol@example.net) waits for the address's own confirmation"},
		{args: []string{"member", "reject", list, "2", "5", "13", "11"},
			stdout: out("rejected request 2 (subscribe carol@example.net) on " + list + "\n" +
				"rejected request 5 (unsubscribe frank@example.net) on " + list + "\n" +
				"rejected request 13 (subscribe ned@example.net) on " + list + "\n"),
			wantErr: "member reject: request 11 is for list " + other},
		{args: []string{"member", "ls", list}, stdout: out("bob@example.net\ngina@example.net\nhal@example.net\nivy@example.net\n")},
	})
	stdout = mustRun(t, dir, "member", "requests", list)
	ids = nil
	for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")[1:] {
		ids = append(ids, strings.Fields(line)[0])
	}
	if diff := cmp.Diff([]string{"9", "10", "12"}, ids); diff != "" {
		t.Errorf("member requests IDs after the decisions (-want +got):\n%s\n%s", diff, stdout)
	}
}
