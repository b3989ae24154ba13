package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fanmail/internal/pgtest"
	"fanmail/unsubscribe"
)

// TestTwoNodesEndToEnd runs two real `fanmail serve` processes, a and
// b, each with its own data directory and spool, on one PostgreSQL list
// store (a throwaway cluster) and one fake network:
//
//   - a list created with a's CLI gets a post through b, and every member
//     gets it once; b's queue IDs carry its node name;
//   - a post held on a is approved with b's CLI and delivered once;
//   - a member unsubscribed through b's one-click endpoint gets nothing
//     from the next post through a;
//   - a, killed with SIGKILL after acknowledging posts it only queued,
//     delivers every one of them once when it is started again.
func TestTwoNodesEndToEnd(t *testing.T) {
	t.Parallel()
	db := pgtest.Start(t).NewDatabase(t)
	domains := testDomains(3)
	n := newFakeNet(t, domains, nil)
	root := t.TempDir()
	dirA, dirB := filepath.Join(root, "a"), filepath.Join(root, "b")
	node := func(dir, name, extra string) string {
		return n.writeConfig(t, dir, fmt.Sprintf("[lists]\ndatabase = %q\n[node]\nname = %q\n"+webConfig+"%s", db, name, extra))
	}
	cfgA, cfgB := node(dirA, "a", ""), node(dirB, "b", "")
	// a that only queues (and waits an hour to run its queue), for the kill.
	cfgAQueue := node(dirA, "a", "[queue]\ndelivery_mode = \"queue\"\ninterval = \"1h\"\n")

	members := makeList(t, cfgA, e2eList, domains, []int{3, 2, 2})
	// The unsubscribe key is shared, as README says: copied to b.
	keys, err := unsubscribe.Open(filepath.Join(dirA, "unsubscribe-keys"))
	if err != nil {
		t.Fatal(err)
	}
	copyDir(t, filepath.Join(dirA, "unsubscribe-keys"), filepath.Join(dirB, "unsubscribe-keys"))
	pa, pb := startFanmail(t, cfgA), startFanmail(t, cfgB)

	// 1. Created on a, posted through b.
	qid := postTo(t, pb.addr, "poster@example.org", e2eList, nodePost(1))
	if !strings.HasSuffix(qid, ".b") {
		t.Errorf("queue ID %q from b lacks its node name", qid)
	}
	n.waitDistinct(t, len(members), 30*time.Second, pb)
	wantPost(t, n, 1, members, nil)

	// 2. Held on a, approved with b's CLI.
	fanmailCLI(t, cfgB, "", "list", "set", e2eList, "posting=moderated")
	if r := send(t, pa.addr, "poster@example.org", e2eList, nodePost(2)); r.code != 250 {
		t.Fatalf("post 2 through a: %v", r)
	}
	ids := modLsIDs(t, cfgB, e2eList)
	id, ok := ids["node-post-2"]
	if !ok {
		t.Fatalf("b's mod ls does not show the post held on a: %v", ids)
	}
	fanmailCLI(t, cfgB, "", "mod", "approve", id)
	n.waitDistinct(t, 2*len(members), 30*time.Second, pa)
	wantPost(t, n, 2, members, nil)
	fanmailCLI(t, cfgA, "", "list", "set", e2eList, "posting=open")

	// 3. Unsubscribed through b, posted through a.
	gone := members[1]
	tok, err := keys.Mint(e2eList, gone)
	if err != nil {
		t.Fatal(err)
	}
	webB := pb.httpBase(t, webListenRE, "web endpoint of b")
	form := url.Values{"List-Unsubscribe": {"One-Click"}}.Encode()
	if code, body := webRequest(t, http.MethodPost, unsubscribe.URL(webB, tok), form); code != http.StatusOK {
		t.Fatalf("one-click POST to b: %d %q", code, body)
	}
	postTo(t, pa.addr, "poster@example.org", e2eList, nodePost(3))
	rest := append([]string{members[0]}, members[2:]...)
	n.waitDistinct(t, 2*len(members)+len(rest), 30*time.Second, pa)
	wantPost(t, n, 3, rest, []string{gone})

	// 4. a only queues; three posts acknowledged, then SIGKILL.
	pa.stop(t)
	pa = startFanmail(t, cfgAQueue)
	for i := 4; i <= 6; i++ {
		if q := postTo(t, pa.addr, "poster@example.org", e2eList, nodePost(i)); !strings.HasSuffix(q, ".a") {
			t.Errorf("queue ID %q from a lacks its node name", q)
		}
	}
	pa.kill(t)
	for i := 4; i <= 6; i++ {
		if c := pairCount(n, i, rest[0]); c != 0 {
			t.Fatalf("post %d was delivered before the restart", i)
		}
	}
	pa = startFanmail(t, cfgA)
	n.waitDistinct(t, 2*len(members)+4*len(rest), 30*time.Second, pa)
	for i := 4; i <= 6; i++ {
		wantPost(t, n, i, rest, []string{gone})
	}
	pa.stop(t)
	pb.stop(t)
}

// nodePost is post number i, told apart by its Message-ID.
func nodePost(i int) string {
	return fmt.Sprintf("From: Poster <poster@example.org>\r\nTo: %s\r\nSubject: node-post-%d\r\n"+
		"Message-ID: <node-%d@example.org>\r\n\r\nPost %d.\r\n", e2eList, i, i, i)
}

// pairCount is how many times post i reached rcpt, over every sink.
func pairCount(n *fakeNet, i int, rcpt string) int {
	total := 0
	for _, s := range n.sinks {
		total += s.PairCount(fmt.Sprintf("<node-%d@example.org>", i), rcpt)
	}
	return total
}

// wantPost checks that post i reached every one of to once and none of
// not.
func wantPost(t *testing.T, n *fakeNet, i int, to, not []string) {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // a second copy would show
	for _, r := range to {
		if c := pairCount(n, i, r); c != 1 {
			t.Errorf("post %d reached %s %d times, want once", i, r, c)
		}
	}
	for _, r := range not {
		if c := pairCount(n, i, r); c != 0 {
			t.Errorf("post %d reached %s, who had unsubscribed", i, r)
		}
	}
}

// copyDir copies the files of src into dst (created 0700), modes kept.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}
