package main

// Deciding many held posts at once, and releasing the claims of a node
// that is gone, through the real binary: posts held over SMTP, the CLI
// in processes of its own, copies at the sinks.

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fanmail/lists"
)

// copiesOf counts the messages rcpt got with subject.
func (n *fakeNet) copiesOf(rcpt, subject string) int {
	c := 0
	for _, d := range n.messagesTo(rcpt) {
		if bytes.Contains(d.Data, []byte("\r\nSubject: "+subject+"\r\n")) {
			c++
		}
	}
	return c
}

// TestModBulkEndToEnd: two CLI processes approve the same held posts at
// once (one by ID, one with --list --all), while the server runs: each
// post reaches the member once, and the two runs' counts add up to the
// number of posts.
func TestModBulkEndToEnd(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test", "lists.example.org"}, nil)
	cfg := n.newConfig(t, "")
	fanmailCLI(t, cfg, "", "list", "create", e2eList)
	fanmailCLI(t, cfg, "", "member", "add", e2eList, "m1@d00.test")
	p := startFanmail(t, cfg)
	subjects := []string{"bulk-1", "bulk-2", "bulk-3", "bulk-4"}
	for _, s := range subjects {
		if r := send(t, p.addr, "outsider@d00.test", e2eList, postFrom("outsider@d00.test", s)); r.code != 250 {
			t.Fatalf("post %s: %v", s, r)
		}
	}
	ids := modLsIDs(t, cfg, e2eList)
	byID := []string{"mod", "approve"}
	for _, s := range subjects {
		byID = append(byID, ids[s])
	}
	var wg sync.WaitGroup
	outs := make([]string, 2)
	for i, args := range [][]string{byID, {"mod", "approve", "--list", e2eList, "--all"}} {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, _ := exec.CommandContext(ctx, fanmailBinary(t), append([]string{"--config", cfg}, args...)...).CombinedOutput()
			outs[i] = string(out)
		})
	}
	wg.Wait()
	approved := 0
	for _, line := range strings.Split(outs[0]+outs[1], "\n") {
		if strings.HasPrefix(line, "approved post ") {
			approved++
		}
	}
	if approved != len(subjects) {
		t.Errorf("the two runs approved %d posts together, want %d:\n%s\n%s", approved, len(subjects), outs[0], outs[1])
	}
	n.waitMessages(t, "m1@d00.test", len(subjects), p)
	for _, s := range subjects {
		if c := n.copiesOf("m1@d00.test", s); c != 1 {
			t.Errorf("%s reached the member %d times, want once", s, c)
		}
	}
	p.stop(t)
}

// TestModReleaseEndToEnd: a post approved and claimed by node "gone"
// waits while node "live" runs, even across its restart. While gone's
// heartbeat is recent, mod release --node gone refuses even with
// --force; the CLI of another node ("ops") sees live's own heartbeat,
// and its clean stop. Once gone has been silent for long, mod release
// lists its claim and refuses without --force; with --force, live
// distributes it, once.
func TestModReleaseEndToEnd(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test", "lists.example.org"}, nil)
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := n.writeConfig(t, dataDir, "[node]\nname = \"live\"\n")
	ops := n.writeConfig(t, dataDir, "[node]\nname = \"ops\"\n")
	fanmailCLI(t, cfg, "", "list", "create", e2eList)
	fanmailCLI(t, cfg, "", "member", "add", e2eList, "m1@d00.test")
	p := startFanmail(t, cfg)
	for _, s := range []string{"stuck", "free"} {
		if r := send(t, p.addr, "outsider@d00.test", e2eList, postFrom("outsider@d00.test", s)); r.code != 250 {
			t.Fatalf("post %s: %v", s, r)
		}
	}
	ids := modLsIDs(t, cfg, e2eList)
	p.stop(t)

	// Node gone approved "stuck" and claimed it, and its last heartbeat
	// is a moment ago: it runs somewhere.
	fanmailCLI(t, cfg, "", "mod", "approve", ids["stuck"], ids["free"])
	s, err := lists.Open(filepath.Join(dataDir, "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const claim = "0KXJ5V3F8A1B2C3D.gone"
	var stuck int64
	posts, err := s.Posts(ctx, lists.PostFilter{List: e2eList})
	if err != nil {
		t.Fatal(err)
	}
	for _, post := range posts {
		if post.Subject == "stuck" {
			stuck = post.ID
		}
	}
	if got, err := s.Claim(ctx, stuck, claim); err != nil || !got {
		t.Fatalf("claim post %d as node gone: %v, %v", stuck, got, err)
	}
	if err := s.NodeStarted(ctx, "gone", "old", time.Now()); err != nil {
		t.Fatal(err)
	}

	// live settles only its own claims at start: "free" goes out,
	// "stuck" waits.
	p = startFanmail(t, cfg)
	n.waitMessages(t, "m1@d00.test", 1, p)
	if n.copiesOf("m1@d00.test", "free") != 1 {
		t.Fatalf("the member did not get the unclaimed post")
	}
	out, err := runBinary(t, "--config", cfg, "mod", "release", "--node", "gone", "--force")
	if err == nil || !strings.Contains(out, claim+"  distributing the post") || !strings.Contains(out, ", running\n") ||
		!strings.Contains(out, "nothing released, --force or not: node gone is running") {
		t.Fatalf("mod release --force of a running node: %v\n%s", err, out)
	}
	if out, err := runBinary(t, "--config", cfg, "mod", "release", "--node", "live", "--force"); err == nil ||
		!strings.Contains(out, "live is this node's own name") {
		t.Errorf("mod release of the node's own name: %v\n%s", err, out)
	}
	// live's own heartbeat, read by another node's CLI; it holds no claim.
	out = fanmailCLI(t, ops, "", "mod", "release", "--node", "live")
	if !strings.Contains(out, "node live: last seen ") || !strings.Contains(out, ", running\n") ||
		!strings.Contains(out, "node live holds no claims on held posts") {
		t.Errorf("mod release --node live from node ops, while live runs:\n%s", out)
	}
	p.stop(t)
	out = fanmailCLI(t, ops, "", "mod", "release", "--node", "live")
	if !strings.Contains(out, ", stopped cleanly\n") {
		t.Errorf("mod release --node live from node ops, after live stopped:\n%s", out)
	}

	// gone was last heard of an hour ago: its claim is listed, and
	// released with --force.
	if err := s.NodeStarted(ctx, "gone", "old", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	p = startFanmail(t, cfg)
	out, err = runBinary(t, "--config", cfg, "mod", "release", "--node", "gone")
	if err == nil || !strings.Contains(out, claim+"  distributing the post") || !strings.Contains(out, "gone: no heartbeat for over") ||
		!strings.Contains(out, "nothing released. Node gone is not running") {
		t.Fatalf("mod release without --force: %v\n%s", err, out)
	}
	if c := n.copiesOf("m1@d00.test", "stuck"); c != 0 {
		t.Fatalf("the claimed post went out before its claim was released (%d copies)", c)
	}
	out = fanmailCLI(t, cfg, "", "mod", "release", "--node", "gone", "--force")
	if !strings.Contains(out, "(accepted, claim "+claim+")") || !strings.Contains(out, "released 1 of 1 claim of node gone") {
		t.Errorf("mod release --force:\n%s", out)
	}
	n.waitMessages(t, "m1@d00.test", 2, p)
	if c := n.copiesOf("m1@d00.test", "stuck"); c != 1 {
		t.Errorf("the released post reached the member %d times, want once", c)
	}
	p.stop(t)
}
