package lists

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/internal/pgtest"
)

// testDecideEach: each post is decided on its own; a missing or already
// decided post fails alone and names why; the others are decided.
func testDecideEach(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, testList)
	a := holdPost(t, s, "Subject: a\r\n\r\n")
	b := holdPost(t, s, "Subject: b\r\n\r\n")
	c := holdPost(t, s, "Subject: c\r\n\r\n")
	if _, err := s.Decide(ctx, b, Decision{Action: "reject", By: "mod@example.org"}); err != nil {
		t.Fatal(err)
	}
	out := s.DecideEach(ctx, []int64{a, 999, b, c}, Decision{Action: "discard", By: "cli:root"})
	type result struct {
		ID      int64
		Subject string
		Err     string
	}
	var got []result
	for _, o := range out {
		r := result{ID: o.ID, Subject: o.Post.Subject}
		switch {
		case errors.Is(o.Err, ErrNoPost):
			r.Err = "no post"
		case errors.Is(o.Err, ErrDecided) && strings.Contains(o.Err.Error(), "rejected by mod@example.org"):
			r.Err = "decided"
		case o.Err != nil:
			r.Err = o.Err.Error()
		}
		got = append(got, r)
	}
	want := []result{{a, "hi", ""}, {999, "", "no post"}, {b, "hi", "decided"}, {c, "hi", ""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	left, err := s.Posts(ctx, PostFilter{})
	if err != nil || len(left) != 1 || left[0].ID != b || left[0].State != PostRejected {
		t.Errorf("posts left = %+v, %v; want only %d, rejected", left, err, b)
	}

	// A context that ended decides nothing more.
	d := holdPost(t, s, "Subject: d\r\n\r\n")
	done, cancel := context.WithCancel(ctx)
	cancel()
	out = s.DecideEach(done, []int64{d}, Decision{Action: "approve", By: "cli:root"})
	if len(out) != 1 || !errors.Is(out[0].Err, context.Canceled) {
		t.Errorf("after the context ended: %+v, want context.Canceled", out)
	}
	if p, err := s.GetPost(ctx, d); err != nil || p.State != PostHeld {
		t.Errorf("post %d = %+v, %v; want still held", d, p, err)
	}
}

// testDecideEachConcurrent: two bulk approvals of the same posts (one
// from another process, i.e. another Store on the same database) and a
// moderator answering by mail all race; every post is approved exactly
// once, and whoever came second was told it was already decided (the
// moderator: that the approval already stands).
func testDecideEachConcurrent(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s, target := be.openNew(t)
	if err := s.CreateList(ctx, testList, ""); err != nil {
		t.Fatal(err)
	}
	other := be.open(t, target)
	const n = 12
	ids := make([]int64, n)
	tokens := make([]string, n)
	for i := range ids {
		ids[i] = holdPost(t, s, "Subject: x\r\n\r\n")
		tok, err := s.IssueModerationTokens(ctx, ids[i], []string{"mod@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		tokens[i] = tok[0]
	}
	// Reverse order for the second run, so the two meet in the middle.
	rev := make([]int64, n)
	for i, id := range ids {
		rev[n-1-i] = id
	}
	var wg sync.WaitGroup
	var first, second []Outcome
	mail := make([]error, n)
	already := make([]bool, n)
	wg.Go(func() { first = s.DecideEach(ctx, ids, Decision{Action: "approve", By: "cli:one"}) })
	wg.Go(func() { second = other.DecideEach(ctx, rev, Decision{Action: "approve", By: "cli:two"}) })
	wg.Go(func() {
		for i := n / 3; i < 2*n/3; i++ {
			var use TokenUse
			use, mail[i] = other.UseModerationToken(ctx, testList, tokens[i], "approve")
			already[i] = use.Already
		}
	})
	wg.Wait()
	wins := map[int64]int{}
	for _, o := range append(first, second...) {
		switch {
		case o.Err == nil:
			wins[o.ID]++
		case !errors.Is(o.Err, ErrDecided):
			t.Errorf("post %d: %v, want nil or ErrDecided", o.ID, o.Err)
		}
	}
	for i, err := range mail {
		switch {
		case i < n/3 || i >= 2*n/3:
		case err != nil:
			t.Errorf("mail answer for post %d: %v", ids[i], err)
		case !already[i]:
			// Already: the CLI approved it first, and the
			// moderator is told so (the same action is a retry).
			wins[ids[i]]++
		}
	}
	for _, id := range ids {
		p, err := s.GetPost(ctx, id)
		if err != nil || p.State != PostAccepted || wins[id] != 1 {
			t.Errorf("post %d: %d decisions took effect, state %s (%v); want 1, accepted", id, wins[id], p.State, err)
		}
	}
}

// testReleaseClaim: a claim is released only while it is the one named;
// the post is then due again and can be claimed afresh.
func testReleaseClaim(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, testList)
	id := holdPost(t, s, "Subject: x\r\n\r\n")
	if _, err := s.Decide(ctx, id, Decision{Action: "approve", By: "cli"}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Claim(ctx, id, "0KXJ5V3F8A1B2C3D.gone"); err != nil || !got {
		t.Fatal(got, err)
	}
	if due, _ := s.Posts(ctx, PostFilter{Due: created}); len(due) != 0 {
		t.Fatalf("a claimed post is due: %+v", due)
	}
	tests := []struct {
		id    int64
		claim string
		want  bool
	}{
		{id, "0KXJ5V3F8A1B2C3E.gone", false}, // another claim: left alone
		{999, "0KXJ5V3F8A1B2C3D.gone", false},
		{id, "0KXJ5V3F8A1B2C3D.gone", true},
		{id, "0KXJ5V3F8A1B2C3D.gone", false}, // already released
	}
	for _, tt := range tests {
		if got, err := s.ReleaseClaim(ctx, tt.id, tt.claim); err != nil || got != tt.want {
			t.Errorf("ReleaseClaim(%d, %s) = %v, %v; want %v", tt.id, tt.claim, got, err, tt.want)
		}
	}
	if _, err := s.ReleaseClaim(ctx, id, ""); err == nil {
		t.Error("ReleaseClaim with no claim: no error")
	}
	due, err := s.Posts(ctx, PostFilter{Due: created})
	if err != nil || len(due) != 1 || due[0].ID != id || due[0].Claim != "" || due[0].State != PostAccepted {
		t.Fatalf("due after release = %+v, %v; want post %d, accepted, unclaimed", due, err, id)
	}
	if got, err := s.Claim(ctx, id, "0KXJ5V3F8A1B2C3F.alive"); err != nil || !got {
		t.Errorf("claim after release = %v, %v", got, err)
	}
}

// testPostsFrom: the From filter matches the From: address or the
// envelope sender, whatever the case.
func testPostsFrom(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, testList)
	add := func(sender, from string) int64 {
		id, err := s.AddPost(ctx, Post{List: testList, State: PostHeld, Received: created, Sender: sender, From: from,
			Expires: created.Add(time.Hour)}, strings.NewReader("Subject: x\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a := add("bounce@spam.example", "Offer@Spam.example")
	b := add("offer@spam.example", "other@example.net")
	add("p@example.net", "p@example.net")
	for _, tt := range []struct {
		from string
		want []int64
	}{
		{"offer@spam.example", []int64{a, b}},
		{"OFFER@SPAM.EXAMPLE", []int64{a, b}},
		{"bounce@spam.example", []int64{a}},
		{"nobody@example.org", nil},
	} {
		ps, err := s.Posts(ctx, PostFilter{List: testList, State: PostHeld, From: tt.from})
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, p := range ps {
			got = append(got, p.ID)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("From %q (-want +got):\n%s", tt.from, diff)
		}
	}
}

// BenchmarkDiscardEach500: a spam wave's 500 held posts discarded with
// DecideEach, one transaction (one commit) per post; the figure says
// what that choice costs the operator waiting for the command.
func BenchmarkDiscardEach500(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchDiscardEach(b, sqliteBackend()) })
	b.Run("postgres", func(b *testing.B) {
		benchDiscardEach(b, postgresBackend(pgtest.StartOptions(b, pgtest.Options{Durable: true})))
	})
}

func benchDiscardEach(b *testing.B, be backend) {
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		s := be.withList(b, testList)
		ids := make([]int64, 500)
		for i := range ids {
			id, err := s.AddPost(ctx, Post{List: testList, State: PostHeld, Received: created, Sender: "spam@example.net",
				Expires: created.Add(time.Hour)}, strings.NewReader("Subject: offer\r\n\r\nbuy\r\n"))
			if err != nil {
				b.Fatal(err)
			}
			ids[i] = id
		}
		b.StartTimer()
		for _, o := range s.DecideEach(ctx, ids, Decision{Action: "discard", By: "cli"}) {
			if o.Err != nil {
				b.Fatal(o.Err)
			}
		}
	}
}
