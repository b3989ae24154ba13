package lists

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testList = "l@example.org"

// holdPost stores a held post with body and returns its ID.
func holdPost(t *testing.T, s *Store, body string) int64 {
	t.Helper()
	id, err := s.AddPost(context.Background(), Post{List: testList, State: PostHeld, Reason: "not a member",
		QueueID: "Q1", Received: created, Sender: "p@example.net", From: "p@example.net", Subject: "hi",
		Helo: "client.example.net", RemoteAddr: "192.0.2.1", Expires: created.Add(14 * 24 * time.Hour),
		SMTPUTF8: true}, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func testAddPostAndRead(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, testList)
	// A body over several chunks, with a recognizable pattern.
	var b strings.Builder
	b.WriteString("From: p@example.net\r\nSubject: hi\r\n\r\n")
	for i := 0; b.Len() < 3*chunkSize+1000; i++ {
		b.WriteString("line of the body, numbered so that chunks out of order would show\r\n")
	}
	body := b.String()
	id := holdPost(t, s, body)
	p, err := s.GetPost(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := Post{ID: id, List: testList, State: PostHeld, Reason: "not a member", QueueID: "Q1", Received: created,
		Sender: "p@example.net", From: "p@example.net", Subject: "hi", Helo: "client.example.net",
		RemoteAddr: "192.0.2.1", Size: int64(len(body)), Expires: created.Add(14 * 24 * time.Hour), SMTPUTF8: true}
	if diff := cmp.Diff(want, p, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("post (-want +got):\n%s", diff)
	}
	var out bytes.Buffer
	if n, err := s.CopyPostBody(ctx, id, &out); err != nil || n != int64(len(body)) || out.String() != body {
		t.Errorf("CopyPostBody = %d, %v; body intact: %v", n, err, out.String() == body)
	}
	h, err := s.PostHeader(ctx, id, 1<<10)
	if err != nil || string(h) != "From: p@example.net\r\nSubject: hi\r\n\r\n" {
		t.Errorf("PostHeader = %q, %v", h, err)
	}
	if _, err := s.GetPost(ctx, 999); !errors.Is(err, ErrNoPost) {
		t.Errorf("missing post: %v, want ErrNoPost", err)
	}
	if _, err := s.CopyPostBody(ctx, 999, &out); !errors.Is(err, ErrNoPost) {
		t.Errorf("body of a missing post: %v, want ErrNoPost", err)
	}
	if _, err := s.AddPost(ctx, Post{List: "nope@example.org", State: PostHeld}, strings.NewReader("x")); !errors.Is(err, ErrNoList) {
		t.Errorf("post to a missing list: %v, want ErrNoList", err)
	}
}

func testDecide(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		action    string
		wantState PostState // "" = deleted
	}{
		{"approve", PostAccepted},
		{"reject", PostRejected},
		{"discard", ""},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			t.Parallel()
			s := be.withList(t, testList)
			id := holdPost(t, s, "Subject: x\r\n\r\nbody\r\n")
			tokens, err := s.IssueModerationTokens(ctx, id, []string{"m1@example.org", "m2@example.org"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Decide(ctx, id, Decision{Action: tt.action, By: "cli:root", Note: "off topic"}); err != nil {
				t.Fatal(err)
			}
			p, err := s.GetPost(ctx, id)
			switch {
			case tt.wantState == "" && !errors.Is(err, ErrNoPost):
				t.Errorf("after discard: %v, want ErrNoPost", err)
			case tt.wantState != "" && (err != nil || p.State != tt.wantState || p.DecidedBy != "cli:root"):
				t.Errorf("after %s: %+v, %v", tt.action, p, err)
			}
			if tt.action == "reject" && p.Note != "off topic" {
				t.Errorf("note = %q", p.Note)
			}
			// A second decision is refused, naming the first.
			_, err = s.Decide(ctx, id, Decision{Action: "approve", By: "cli:other"})
			if tt.wantState != "" && (!errors.Is(err, ErrDecided) || !strings.Contains(err.Error(), "cli:root")) {
				t.Errorf("second decision: %v, want ErrDecided naming cli:root", err)
			}
			// The moderators' tokens are used up by it: the same action
			// is a retry, the other a conflict.
			for _, tok := range tokens {
				for _, a := range []string{"approve", "reject"} {
					err := s.CheckModerationToken(ctx, testList, tok, a)
					var used *TokenUsedError
					if a == tt.action && err != nil {
						t.Errorf("%s with a token after %s: %v, want nil (a retry)", a, tt.action, err)
					}
					if a != tt.action && (!errors.As(err, &used) || used.Action != tt.action || used.By != "cli:root") {
						t.Errorf("%s with a token after %s: %v, want TokenUsedError{%s, cli:root}", a, tt.action, err, tt.action)
					}
				}
			}
		})
	}
}

func testModerationTokens(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, testList, "other@example.org")
	id := holdPost(t, s, "Subject: x\r\n\r\nbody\r\n")
	tokens, err := s.IssueModerationTokens(ctx, id, []string{"m1@example.org", "m2@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 2 || tokens[0] == tokens[1] || len(tokens[0]) != TokenLen || !ValidTokenSyntax(tokens[0]) ||
		strings.ToLower(tokens[0]) != tokens[0] {
		t.Fatalf("tokens %q: want two distinct lowercase tokens of %d characters", tokens, TokenLen)
	}
	forged := strings.Repeat("a", TokenLen)
	for name, err := range map[string]error{
		"forged":              s.CheckModerationToken(ctx, testList, forged, "approve"),
		"other list":          s.CheckModerationToken(ctx, "other@example.org", tokens[0], "approve"),
		"forged use":          second(s.UseModerationToken(ctx, testList, forged, "approve")),
		"other list use":      second(s.UseModerationToken(ctx, "other@example.org", tokens[0], "reject")),
		"uppercase is fine":   s.CheckModerationToken(ctx, "L@example.org", strings.ToUpper(tokens[0]), "approve"),
		"unused, for approve": s.CheckModerationToken(ctx, testList, tokens[1], "approve"),
	} {
		wantBad := !strings.Contains(name, "fine") && !strings.Contains(name, "unused")
		if wantBad != errors.Is(err, ErrBadToken) || (!wantBad && err != nil) {
			t.Errorf("%s: %v", name, err)
		}
	}
	use, err := s.UseModerationToken(ctx, testList, tokens[1], "approve")
	if err != nil || use.Already || use.By != "m2@example.org" || use.Post.ID != id {
		t.Fatalf("approve by token = %+v, %v", use, err)
	}
	if p, _ := s.GetPost(ctx, id); p.State != PostAccepted || p.DecidedBy != "m2@example.org" {
		t.Errorf("after approve: %+v", p)
	}
	// A retry of the same command, by either moderator: nothing changes.
	for _, tok := range tokens {
		use, err = s.UseModerationToken(ctx, testList, tok, "approve")
		if err != nil || !use.Already {
			t.Errorf("approve again = %+v, %v; want Already", use, err)
		}
	}
	// The other command with a used token is refused and changes nothing.
	var used *TokenUsedError
	if _, err := s.UseModerationToken(ctx, testList, tokens[0], "reject"); !errors.As(err, &used) ||
		!errors.Is(err, ErrTokenUsed) || err.Error() != "the post was already approved by m2@example.org" {
		t.Errorf("reject after approve: %v", err)
	}
	if p, _ := s.GetPost(ctx, id); p.State != PostAccepted {
		t.Errorf("post changed by a refused token: %+v", p)
	}

	// Tokens expire with their post.
	id2 := holdPost(t, s, "Subject: y\r\n\r\nbody\r\n")
	tok2, err := s.IssueModerationTokens(ctx, id2, []string{"m1@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return created.Add(15 * 24 * time.Hour) }
	if err := s.CheckModerationToken(ctx, testList, tok2[0], "approve"); !errors.Is(err, ErrBadToken) {
		t.Errorf("expired token: %v, want ErrBadToken", err)
	}
	if _, err := s.IssueModerationTokens(ctx, id, []string{"m1@example.org"}); !errors.Is(err, ErrDecided) {
		t.Errorf("tokens for a decided post: %v, want ErrDecided", err)
	}
}

func second[T any](_ T, err error) error { return err }

// TestClaimOnce: many concurrent claimers, as several servers or a
// server's poll and its own retry, get one claim between them.
func testClaimOnce(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, testList)
	id := holdPost(t, s, "Subject: x\r\n\r\nbody\r\n")
	if got, err := s.Claim(ctx, id, "QX"); err != nil || got {
		t.Fatalf("claim of a held post = %v, %v; want false", got, err)
	}
	if _, err := s.Decide(ctx, id, Decision{Action: "approve", By: "cli"}); err != nil {
		t.Fatal(err)
	}
	if wins := race(t, 20, func(i int) (bool, error) { return s.Claim(ctx, id, "Q"+string(rune('a'+i))) }); wins != 1 {
		t.Fatalf("%d claims succeeded, want 1", wins)
	}
	claimed, err := s.Posts(ctx, PostFilter{Claimed: true})
	if err != nil || len(claimed) != 1 || claimed[0].Claim == "" {
		t.Fatalf("claimed posts = %+v, %v", claimed, err)
	}
	if due, _ := s.Posts(ctx, PostFilter{Due: created}); len(due) != 0 {
		t.Errorf("a claimed post is due: %+v", due)
	}
	next := created.Add(time.Minute)
	if err := s.Retry(ctx, id, next, "DMARC lookup for example.net failed"); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.Posts(ctx, PostFilter{Due: created}); len(due) != 0 {
		t.Errorf("due before its next try: %+v", due)
	}
	due, _ := s.Posts(ctx, PostFilter{Due: next})
	if len(due) != 1 || due[0].Reason != "DMARC lookup for example.net failed" {
		t.Fatalf("due at its next try: %+v", due)
	}
	if got, _ := s.Claim(ctx, id, "QY"); !got {
		t.Fatal("reclaim after Retry failed")
	}
	if err := s.DeletePost(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPost(ctx, id); !errors.Is(err, ErrNoPost) {
		t.Errorf("finished post still there: %v", err)
	}
}

func testPostsFilterAndExpire(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, testList, "other@example.org")
	a := holdPost(t, s, "Subject: a\r\n\r\n")
	b, err := s.AddPost(ctx, Post{List: "other@example.org", State: PostAccepted, Reason: "DMARC lookup failed",
		Received: created, Expires: created.Add(time.Hour)}, strings.NewReader("Subject: b\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := holdPost(t, s, "Subject: c\r\n\r\n")
	if _, err := s.Decide(ctx, c, Decision{Action: "reject", By: "cli"}); err != nil {
		t.Fatal(err)
	}
	ids := func(f PostFilter) []int64 {
		ps, err := s.Posts(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	for name, tt := range map[string]struct {
		f    PostFilter
		want []int64
	}{
		"all":      {PostFilter{}, []int64{a, b, c}},
		"list":     {PostFilter{List: testList}, []int64{a, c}},
		"held":     {PostFilter{State: PostHeld}, []int64{a}},
		"due":      {PostFilter{Due: created}, []int64{a, b, c}},
		"claimed":  {PostFilter{Claimed: true}, nil},
		"list+due": {PostFilter{List: "other@example.org", Due: created}, []int64{b}},
	} {
		if diff := cmp.Diff(tt.want, ids(tt.f)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	tokA, err := s.IssueModerationTokens(ctx, a, []string{"m@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkNotified(ctx, a); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{b, c}, ids(PostFilter{Due: created})); diff != "" {
		t.Errorf("due after notifying a (-want +got):\n%s", diff)
	}

	// An hour on, b has expired; a fortnight on, a too. The rejected c
	// still owes its poster a notice and stays.
	gone, err := s.Expire(ctx, created.Add(time.Hour))
	if err != nil || len(gone) != 1 || gone[0].ID != b {
		t.Errorf("Expire after an hour = %+v, %v; want b", gone, err)
	}
	gone, err = s.Expire(ctx, created.Add(15*24*time.Hour))
	if err != nil || len(gone) != 1 || gone[0].ID != a {
		t.Errorf("Expire after a fortnight = %+v, %v; want a", gone, err)
	}
	if diff := cmp.Diff([]int64{c}, ids(PostFilter{})); diff != "" {
		t.Errorf("left (-want +got):\n%s", diff)
	}
	if err := s.CheckModerationToken(ctx, testList, tokA[0], "approve"); !errors.Is(err, ErrBadToken) {
		t.Errorf("token of an expired post: %v, want ErrBadToken", err)
	}
	if chunks, err := count(s, "post_chunks"); err != nil || chunks != 1 {
		t.Errorf("chunks left = %d, %v; want only c's", chunks, err)
	}
}

// testClaimNotice: one claimer of a held post's notices among many; a
// decision ends the claim, and neither MarkNotified nor an Unclaim by
// the old claimer touches the post after that.
func testClaimNotice(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, testList)
	id := holdPost(t, s, "Subject: x\r\n\r\nbody\r\n")
	if wins := race(t, 10, func(i int) (bool, error) { return s.ClaimNotice(ctx, id, fmt.Sprintf("N%d", i)) }); wins != 1 {
		t.Fatalf("%d notice claims succeeded, want 1", wins)
	}
	p, err := s.GetPost(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Unclaim(ctx, id, "someone else"); err != nil {
		t.Fatal(err)
	}
	if q, _ := s.GetPost(ctx, id); q.Claim != p.Claim {
		t.Fatalf("Unclaim with another claim changed it to %q", q.Claim)
	}
	if _, err := s.Decide(ctx, id, Decision{Action: "approve", By: "cli"}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Claim(ctx, id, "QD"); err != nil || !got {
		t.Fatalf("claim for distribution after the decision = %v, %v", got, err)
	}
	if err := s.MarkNotified(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := s.Unclaim(ctx, id, p.Claim); err != nil {
		t.Fatal(err)
	}
	if q, _ := s.GetPost(ctx, id); q.Claim != "QD" || q.State != PostAccepted {
		t.Errorf("the notifier's late calls changed the distribution claim: %+v", q)
	}
	if got, _ := s.ClaimNotice(ctx, id, "N"); got {
		t.Error("ClaimNotice took an accepted post")
	}
}

// race calls claim(0) to claim(n-1) at once and returns how many
// returned true; an error fails the test.
func race(t *testing.T, n int, claim func(i int) (bool, error)) int32 {
	t.Helper()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got, err := claim(i)
			if err != nil {
				t.Error(err)
			}
			if got {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	return wins.Load()
}
