package lists

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testConfirmRoundTrip: a request waits for its token; the token does
// it once, for its own list only, and not after it expired.
func testConfirmRoundTrip(t *testing.T, be backend) {
	ctx := context.Background()
	s := be.withList(t, "l@example.org")
	if err := s.CreateList(ctx, "other@example.org", ""); err != nil {
		t.Fatal(err)
	}
	token, r, err := s.OpenRequest(ctx, "L@example.org", "Bob@X.example", RequestSubscribe, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if r.List != "l@example.org" || r.Address != "Bob@x.example" || !r.Expires.Equal(created.Add(time.Hour)) || !ValidTokenSyntax(token) {
		t.Fatalf("request %+v, token %q", r, token)
	}
	if ok, _ := s.IsMember(ctx, "l@example.org", "bob@x.example"); ok {
		t.Fatal("member before confirming")
	}
	if err := s.CheckConfirmToken(ctx, "other@example.org", token); !errors.Is(err, ErrBadToken) {
		t.Errorf("token checked for another list: %v, want ErrBadToken", err)
	}
	if err := s.CheckConfirmToken(ctx, "l@example.org", newToken()); !errors.Is(err, ErrBadToken) {
		t.Errorf("forged token: %v, want ErrBadToken", err)
	}
	if err := s.CheckConfirmToken(ctx, "l@example.org", token); err != nil {
		t.Fatalf("good token: %v", err)
	}
	c, err := s.UseConfirmToken(ctx, "l@example.org", token, "bob@x.example", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Changed || c.Approved || len(c.Approvers) != 0 || c.Request.ID != r.ID {
		t.Errorf("confirmation %+v", c)
	}
	if ok, _ := s.IsMember(ctx, "l@example.org", "bob@x.example"); !ok {
		t.Error("not a member after confirming")
	}
	var used *ConfirmUsedError
	if _, err := s.UseConfirmToken(ctx, "l@example.org", token, "eve@x.example", time.Hour); !errors.As(err, &used) || used.By != "bob@x.example" {
		t.Errorf("replayed token: %v, want ConfirmUsedError by bob", err)
	}
	if err := s.CheckConfirmToken(ctx, "l@example.org", token); !errors.As(err, &used) {
		t.Errorf("check of a used token: %v", err)
	}

	// Unsubscribe, then an expired one.
	tok2, _, err := s.OpenRequest(ctx, "l@example.org", "bob@x.example", RequestUnsubscribe, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok3, _, err := s.OpenRequest(ctx, "l@example.org", "carol@x.example", RequestSubscribe, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return created.Add(2 * time.Minute) }
	if _, err := s.UseConfirmToken(ctx, "l@example.org", tok3, "carol@x.example", time.Hour); !errors.Is(err, ErrBadToken) {
		t.Errorf("expired token: %v, want ErrBadToken", err)
	}
	if c, err := s.UseConfirmToken(ctx, "l@example.org", tok2, "bob@x.example", time.Hour); err != nil || !c.Changed {
		t.Errorf("unsubscribe: %+v, %v", c, err)
	}
	members, _ := s.Members(ctx, "l@example.org")
	if len(members) != 0 {
		t.Errorf("members %v, want none", members)
	}
	gone, err := s.ExpireRequests(ctx, s.now())
	if err != nil || len(gone) != 1 || gone[0].Address != "carol@x.example" {
		t.Errorf("expired requests %+v, %v; want carol's", gone, err)
	}
	if gone, err := s.ExpireRequests(ctx, s.now()); err != nil || len(gone) != 0 {
		t.Errorf("second expiry: %+v, %v", gone, err)
	}
}

// testModeratedSubscription: with subscribe_policy = moderate a
// confirmed subscription waits for a moderator, whose token adds the
// member; the address's own token cannot stand in for it.
func testModeratedSubscription(t *testing.T, be backend) {
	ctx := context.Background()
	s := be.withList(t, "l@example.org")
	if err := s.SetSettings(ctx, "l@example.org", [][2]string{{"subscribe_policy", "moderate"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddModerators(ctx, "l@example.org", []string{"mod1@example.org", "mod2@example.org"}); err != nil {
		t.Fatal(err)
	}
	token, _, err := s.OpenRequest(ctx, "l@example.org", "bob@x.example", RequestSubscribe, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.UseConfirmToken(ctx, "l@example.org", token, "bob@x.example", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var to []string
	for _, a := range c.Approvers {
		to = append(to, a.Address)
	}
	if diff := cmp.Diff([]string{"mod1@example.org", "mod2@example.org"}, to); diff != "" || c.Changed || !c.Waiting {
		t.Fatalf("approvers (-want +got):\n%s; changed %v, waiting %v", diff, c.Changed, c.Waiting)
	}
	if ok, _ := s.IsMember(ctx, "l@example.org", "bob@x.example"); ok {
		t.Fatal("member before a moderator approved")
	}
	c, err = s.UseConfirmToken(ctx, "l@example.org", c.Approvers[1].Token, "mod2@example.org", time.Hour)
	if err != nil || !c.Approved || !c.Changed {
		t.Fatalf("approval: %+v, %v", c, err)
	}
	if ok, _ := s.IsMember(ctx, "l@example.org", "bob@x.example"); !ok {
		t.Fatal("not a member after approval")
	}
}

// testAllowAnswer: at most perDay answers to a mailbox in any 24
// hours, whatever the case of its letters or the +detail of its
// address.
func testAllowAnswer(t *testing.T, be backend) {
	ctx := context.Background()
	s := be.withList(t, "l@example.org")
	at := created
	var got []bool
	for i, a := range []string{"v@x.example", "V@X.example", "v@x.example", "other@x.example",
		"w+1@x.example", "W+2@x.example", "w@x.example", "w+3@y.example", "+w@x.example"} {
		ok, err := s.AllowAnswer(ctx, a, at.Add(time.Duration(i)*time.Hour), 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ok)
	}
	if diff := cmp.Diff([]bool{true, true, false, true, true, true, false, true, true}, got); diff != "" {
		t.Errorf("allowed (-want +got):\n%s", diff)
	}
	if ok, _ := s.AllowAnswer(ctx, "v@x.example", at.Add(24*time.Hour+time.Second), 2); !ok {
		t.Error("the first answer of yesterday still counts")
	}
	if ok, _ := s.AllowAnswer(ctx, "new@x.example", at, 0); ok {
		t.Error("an answer allowed with a limit of 0")
	}
	if err := s.SweepAnswers(ctx, at.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
}
