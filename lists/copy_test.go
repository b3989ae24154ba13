package lists

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/bounces"
)

// fill gives s one of everything the store keeps: two lists with
// members, settings and moderators, a held post with a body of several
// chunks and its tokens, an accepted one, and a deleted post whose id
// must not come back.
func fill(t *testing.T, s *Store) (held int64) {
	t.Helper()
	ctx := context.Background()
	for _, l := range []string{"Announce@example.org", "talk@example.org"} {
		if err := s.CreateList(ctx, l, "owner@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	var addrs []string
	for i := range 1234 {
		addrs = append(addrs, fmt.Sprintf("m%d@d%d.example", i, i%7))
	}
	addMembers(t, s, "announce@example.org", addrs...)
	addMembers(t, s, "talk@example.org", addrs[:3]...)
	if err := s.SetSettings(ctx, "talk@example.org", [][2]string{{"posting", "moderated"}, {"subject_prefix", "[talk]"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddModerators(ctx, "talk@example.org", []string{"mod@example.org"}); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), chunkSize/16*2+100) // three chunks
	post := func(state PostState) int64 {
		id, err := s.AddPost(ctx, Post{List: "talk@example.org", State: state, Reason: "test", QueueID: "Q1",
			Received: created, Sender: "a@example.org", Expires: created.Add(24 * time.Hour)}, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	gone := post(PostHeld)
	held = post(PostHeld)
	post(PostAccepted)
	if _, err := s.IssueModerationTokens(ctx, held, []string{"mod@example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decide(ctx, gone, Decision{Action: "discard", By: "cli"}); err != nil {
		t.Fatal(err)
	}
	// The highest id is deleted too, so that only the generator knows it.
	last := post(PostHeld)
	if err := s.DeletePost(ctx, last); err != nil {
		t.Fatal(err)
	}
	// A node that ran and stopped cleanly.
	if err := s.NodeStarted(ctx, "n1", "v1", created); err != nil {
		t.Fatal(err)
	}
	if err := s.NodeStopped(ctx, "n1", created.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// A request by mail waiting for its confirmation (a token), an
	// answer counted, and a member's bounce with its evidence.
	if _, _, err := s.OpenRequest(ctx, "talk@example.org", "new@example.org", RequestSubscribe, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AllowAnswer(ctx, "new@example.org", created, 10); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.RecordBounce(ctx, "talk@example.org", addrs[1], BounceEvent{At: created, Source: "dsn", Action: "failed",
		Status: "5.1.1", Severity: "hard", Diagnostic: "550 5.1.1 unknown", Evidence: "Status: 5.1.1"},
		func(st bounces.State) (bounces.State, bounces.Decision) {
			st.Score, st.LastBounce = 1, created
			return st, bounces.Decision{Reason: "score 1"}
		})
	if err != nil {
		t.Fatal(err)
	}
	return held
}

// dump reads everything a store holds through its API.
func dump(t *testing.T, s *Store) map[string]any {
	t.Helper()
	ctx := context.Background()
	out := map[string]any{}
	ls, err := s.Lists(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ls {
		ls[i].Created = ls[i].Created.UTC()
	}
	out["lists"] = ls
	perList := map[string]func(list string) (any, error){
		"members":    func(list string) (any, error) { return s.Members(ctx, list) },
		"settings":   func(list string) (any, error) { return s.SettingValues(ctx, list) },
		"moderators": func(list string) (any, error) { return s.Moderators(ctx, list) },
	}
	for _, l := range ls {
		for name, read := range perList {
			v, err := read(l.Address)
			if err != nil {
				t.Fatal(err)
			}
			out[name+" "+l.Address] = v
		}
		bouncing, err := s.BouncingMembers(ctx, l.Address)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bouncing {
			info, err := s.MemberBounceInfo(ctx, l.Address, b.Address)
			if err != nil {
				t.Fatal(err)
			}
			info.State.LastBounce = info.State.LastBounce.UTC()
			for i := range info.Events {
				info.Events[i].At = info.Events[i].At.UTC()
			}
			out["bounces "+l.Address+" "+b.Address] = info
		}
	}
	posts, err := s.Posts(ctx, PostFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range posts {
		var b bytes.Buffer
		if _, err := s.CopyPostBody(ctx, p.ID, &b); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("body %d", p.ID)] = b.Len()
		posts[i].Received, posts[i].Expires = p.Received.UTC(), p.Expires.UTC()
	}
	out["posts"] = posts
	nodes, err := s.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out["nodes"] = nodes
	return out
}

// testCopy copies a filled store into a fresh one of every kind and
// back, and compares what the API reads from each.
func testCopy(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	src, _ := be.openNew(t)
	held := fill(t, src)
	want := dump(t, src)
	for _, to := range []backend{sqliteBackend(), be} {
		t.Run("to "+to.name, func(t *testing.T) {
			dst, _ := to.openNew(t)
			counts, err := Copy(ctx, src, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantCounts := map[string]int64{"lists": 2, "members": 1237, "settings": 2, "moderators": 1,
				"posts": 2, "post_chunks": 6, "tokens": 2, "requests": 1, "answers": 1, "member_bounces": 1, "bounce_events": 1, "nodes": 1}
			got := map[string]int64{}
			for _, c := range counts {
				got[c.Table] = c.Rows
			}
			if diff := cmp.Diff(wantCounts, got); diff != "" {
				t.Errorf("copied rows (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, dump(t, dst)); diff != "" {
				t.Errorf("target differs from source (-want +got):\n%s", diff)
			}
			// The copy works as a store: its token still decides the
			// post, and a new post gets an id never handed out before.
			if _, err := dst.Decide(ctx, held, Decision{Action: "approve", By: "cli"}); err != nil {
				t.Fatal(err)
			}
			id, err := dst.AddPost(ctx, Post{List: "talk@example.org", State: PostHeld, QueueID: "Q2",
				Received: created, Expires: created.Add(time.Hour)}, strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			if id <= held+2 {
				t.Errorf("new post in the copy got id %d; ids up to %d were handed out in the source", id, held+2)
			}
			if err := dst.CreateList(ctx, "new@example.org", ""); err != nil {
				t.Errorf("CreateList in the copy: %v", err)
			}
		})
	}
}

func testCopyRefusesNonEmpty(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	src, _ := be.openNew(t)
	fill(t, src)
	dst := be.withList(t, "already@example.org")
	_, err := Copy(ctx, src, dst, nil)
	if !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Copy into a store with a list = %v; want ErrNotEmpty", err)
	}
	if ls, err := dst.Lists(ctx); err != nil || len(ls) != 1 {
		t.Errorf("target after the refused copy: %v, %v; want its one list", ls, err)
	}
}

// testCopyCoversEveryTable: tableOrder names exactly the schema's
// tables, so a migration adding a table without listing it fails here.
func testCopyCoversEveryTable(t *testing.T, be backend) {
	t.Parallel()
	s, _ := be.openNew(t)
	have, err := s.d.tables(context.Background(), s.db)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(have)
	want := slices.Clone(tableOrder)
	slices.Sort(want)
	if diff := cmp.Diff(want, have); diff != "" {
		t.Errorf("tables of the schema (-tableOrder +database):\n%s", diff)
	}
}

// TestPgDDL: the translation of migration steps written for SQLite,
// including the shapes later steps use (REAL, ALTER TABLE, composite
// keys, comments that mention types).
func TestPgDDL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"id INTEGER PRIMARY KEY AUTOINCREMENT,", "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"},
		{"id INTEGER PRIMARY KEY,", "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"},
		{"address TEXT NOT NULL UNIQUE COLLATE NOCASE,", "address TEXT NOT NULL UNIQUE COLLATE fanmail_nocase,"},
		{"address TEXT NOT NULL, -- the TEXT of an INTEGER", `address TEXT COLLATE "C" NOT NULL, -- the TEXT of an INTEGER`},
		{"score REAL NOT NULL,", "score DOUBLE PRECISION NOT NULL,"},
		{"data BLOB NOT NULL,", "data BYTEA NOT NULL,"},
		{"PRIMARY KEY (list_id, address)\n) WITHOUT ROWID;", "PRIMARY KEY (list_id, address)\n);"},
		{"ALTER TABLE tokens ADD COLUMN request_id INTEGER NOT NULL DEFAULT 0;", "ALTER TABLE tokens ADD COLUMN request_id BIGINT NOT NULL DEFAULT 0;"},
		{"CREATE INDEX members_by_domain ON members(list_id, domain, address);", "CREATE INDEX members_by_domain ON members(list_id, domain, address);"},
	}
	for _, tt := range tests {
		if got := pgDDL(tt.in); got != tt.want {
			t.Errorf("pgDDL(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}
