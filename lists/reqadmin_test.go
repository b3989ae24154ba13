package lists

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// requestsFixture opens a store with a moderated list l@example.org
// (moderator mod@example.org) and another list o@example.org, and these
// requests, one a minute from created on:
//
//	1 bob@x.example   subscribe l, confirmed: waits for a moderator
//	2 carol@x.example subscribe l, waits for carol's confirmation
//	3 dave@x.example  subscribe o, waits for dave's confirmation
//	4 erin@x.example  subscribe l, expires after a minute
//	5 frank@x.example subscribe l, confirmed, and then added by hand
//
// It returns the store, with its clock at created+10m, and the
// moderator's token for bob.
func requestsFixture(t *testing.T, be backend) (*Store, string) {
	t.Helper()
	ctx := context.Background()
	s := be.withList(t, "l@example.org", "o@example.org")
	if err := s.SetSettings(ctx, "l@example.org", [][2]string{{"subscribe_policy", "moderate"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddModerators(ctx, "l@example.org", []string{"mod@example.org"}); err != nil {
		t.Fatal(err)
	}
	var bobApprove string
	for i, r := range []struct {
		list, addr string
		ttl        time.Duration
		confirm    bool
	}{
		{"l@example.org", "bob@x.example", time.Hour, true},
		{"l@example.org", "carol@x.example", time.Hour, false},
		{"o@example.org", "dave@x.example", time.Hour, false},
		{"l@example.org", "erin@x.example", time.Minute, false},
		{"l@example.org", "frank@x.example", time.Hour, true},
	} {
		s.now = func() time.Time { return created.Add(time.Duration(i) * time.Minute) }
		token, req, err := s.OpenRequest(ctx, r.list, r.addr, RequestSubscribe, r.ttl)
		if err != nil || req.ID != int64(i+1) {
			t.Fatalf("request %d: %+v, %v", i+1, req, err)
		}
		if !r.confirm {
			continue
		}
		c, err := s.UseConfirmToken(ctx, r.list, token, r.addr, 2*time.Hour)
		if err != nil || !c.Waiting || len(c.Approvers) != 1 {
			t.Fatalf("confirm request %d: %+v, %v", i+1, c, err)
		}
		if i == 0 {
			bobApprove = c.Approvers[0].Token
		}
	}
	if _, err := s.AddMembers(ctx, "l@example.org", []string{"frank@x.example"}); err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return created.Add(10 * time.Minute) }
	return s, bobApprove
}

// testRequestsList: an operator sees a list's open requests, oldest
// first, each with its state; expired ones and other lists' are not
// shown.
func testRequestsList(t *testing.T, be backend) {
	s, _ := requestsFixture(t, be)
	ctx := context.Background()
	open := func(id int64, addr string, state RequestState, at, expires time.Duration) OpenRequestInfo {
		return OpenRequestInfo{
			Request: Request{ID: id, List: "l@example.org", Address: addr, Action: RequestSubscribe, Expires: created.Add(expires)},
			State:   state, Created: created.Add(at),
		}
	}
	got, err := s.Requests(ctx, "L@Example.org")
	if err != nil {
		t.Fatal(err)
	}
	want := []OpenRequestInfo{
		// A confirmed subscription waits until approveTTL from its
		// confirmation.
		open(1, "bob@x.example", StateModerator, 0, 2*time.Hour),
		open(2, "carol@x.example", StateConfirm, time.Minute, time.Minute+time.Hour),
		open(5, "frank@x.example", StateModerator, 4*time.Minute, 4*time.Minute+2*time.Hour),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if _, err := s.Requests(ctx, "nope@example.org"); !errors.Is(err, ErrNoList) {
		t.Errorf("requests of no list: %v, want ErrNoList", err)
	}
	s.now = func() time.Time { return created.Add(24 * time.Hour) }
	if got, err := s.Requests(ctx, "l@example.org"); err != nil || len(got) != 0 {
		t.Errorf("requests once all expired: %+v, %v; want none", got, err)
	}
}

// testDecideRequests: approve and reject by ID, each error, and what
// each leaves behind, as steps on one store.
func testDecideRequests(t *testing.T, be backend) {
	s, bobApprove := requestsFixture(t, be)
	ctx := context.Background()
	steps := []struct {
		op      string // approve, reject
		list    string
		id      int64
		wantErr error  // errors.Is
		wantMsg string // the error's text
		changed bool
		welcome bool // the server is to send a welcome
	}{
		{op: "approve", list: "l@example.org", id: 2, wantErr: ErrUnconfirmed,
			wantMsg: "request 2 (subscribe carol@x.example) waits for the address's own confirmation: request not confirmed by its address"},
		{op: "approve", list: "l@example.org", id: 3, wantErr: ErrNoRequest,
			wantMsg: "request 3 is for list o@example.org, not l@example.org: no such request"},
		{op: "reject", list: "l@example.org", id: 3, wantErr: ErrNoRequest},
		{op: "approve", list: "l@example.org", id: 4, wantErr: ErrRequestExpired,
			wantMsg: "request 4 (subscribe erin@x.example) expired at 2026-03-01T12:04:00Z: request expired"},
		{op: "reject", list: "l@example.org", id: 4, wantErr: ErrRequestExpired},
		{op: "approve", list: "l@example.org", id: 99, wantErr: ErrNoRequest, wantMsg: "request 99 on l@example.org: no such request"},
		{op: "approve", list: "nope@example.org", id: 1, wantErr: ErrNoList},
		{op: "approve", list: "L@example.org", id: 1, changed: true, welcome: true},
		{op: "approve", list: "l@example.org", id: 1, wantErr: ErrNoRequest}, // done
		{op: "approve", list: "l@example.org", id: 5},                        // already a member
		{op: "reject", list: "l@example.org", id: 2},
		{op: "reject", list: "l@example.org", id: 2, wantErr: ErrNoRequest},
		{op: "reject", list: "o@example.org", id: 3},
	}
	for i, st := range steps {
		var err error
		var changed, welcome bool
		switch st.op {
		case "approve":
			var o RequestOutcome
			o, err = s.ApproveRequest(ctx, st.list, st.id, "cli:root")
			changed, welcome = o.Changed, o.Welcome
		case "reject":
			_, err = s.RejectRequest(ctx, st.list, st.id)
		}
		if !errors.Is(err, st.wantErr) || (err == nil) != (st.wantErr == nil) {
			t.Errorf("step %d: %s %s %d: %v, want %v", i+1, st.op, st.list, st.id, err, st.wantErr)
			continue
		}
		if st.wantMsg != "" && err.Error() != st.wantMsg {
			t.Errorf("step %d: error %q, want %q", i+1, err, st.wantMsg)
		}
		if changed != st.changed || welcome != st.welcome {
			t.Errorf("step %d: changed %v, welcome %v; want %v, %v", i+1, changed, welcome, st.changed, st.welcome)
		}
	}
	members, err := s.Members(ctx, "l@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"bob@x.example", "frank@x.example"}, members); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
	if got, err := s.Requests(ctx, "l@example.org"); err != nil || len(got) != 0 {
		t.Errorf("requests left: %+v, %v; want none (erin's expired)", got, err)
	}
	// The moderator who replies after the approval is told who did it.
	var used *ConfirmUsedError
	if _, err := s.UseConfirmToken(ctx, "l@example.org", bobApprove, "mod@example.org", time.Hour); !errors.As(err, &used) ||
		*used != (ConfirmUsedError{Action: "approve", By: "cli:root"}) {
		t.Errorf("moderator's token after the approval: %v, want used by cli:root", err)
	}
	// A rejected request's tokens are gone with it.
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM tokens WHERE request_id IN (2, 3)").Scan(&n); err != nil || n != 0 {
		t.Errorf("tokens of rejected requests: %d, %v; want none", n, err)
	}
}

// testRequestWelcome: a subscription approved on the server waits for
// one server to claim and send its welcome; it is no open request any
// more, a failed send gives it back, and one nobody sends lapses.
func testRequestWelcome(t *testing.T, be backend) {
	s, _ := requestsFixture(t, be)
	ctx := context.Background()
	if got, err := s.Welcomes(ctx); err != nil || len(got) != 0 {
		t.Fatalf("welcomes before any approval: %+v, %v", got, err)
	}
	for _, id := range []int64{1, 5} { // 5 is a member already: no welcome
		if _, err := s.ApproveRequest(ctx, "l@example.org", id, "cli:root"); err != nil {
			t.Fatal(err)
		}
	}
	want := []Request{{ID: 1, List: "l@example.org", Address: "bob@x.example", Action: RequestSubscribe,
		Expires: created.Add(10*time.Minute + welcomeTTL)}}
	got, err := s.Welcomes(ctx)
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" || err != nil {
		t.Fatalf("welcomes (-want +got):\n%s%v", diff, err)
	}
	// Approved: no longer an open request, to list or to decide.
	if open, _ := s.Requests(ctx, "l@example.org"); len(open) != 1 || open[0].ID != 2 {
		t.Errorf("open requests %+v, want carol's (2) only", open)
	}
	if _, err := s.RejectRequest(ctx, "l@example.org", 1); !errors.Is(err, ErrNoRequest) {
		t.Errorf("reject of an approved request: %v, want ErrNoRequest", err)
	}
	// One claim wins; a failed send gives it back; a done one is gone.
	for i, c := range []struct {
		claim bool // else finish
		done  bool
		got   bool
	}{
		{claim: true, got: true},
		{claim: true, got: false},
		{claim: false, done: false},
		{claim: true, got: true},
		{claim: false, done: true},
		{claim: true, got: false},
	} {
		if !c.claim {
			if err := s.FinishWelcome(ctx, 1, c.done); err != nil {
				t.Fatalf("step %d: %v", i+1, err)
			}
			continue
		}
		if got, err := s.ClaimWelcome(ctx, 1); err != nil || got != c.got {
			t.Errorf("step %d: claim %v, %v; want %v", i+1, got, err, c.got)
		}
	}
	if got, err := s.Welcomes(ctx); err != nil || len(got) != 0 {
		t.Errorf("welcomes after the welcome was sent: %+v, %v", got, err)
	}
	// One nobody sends lapses, and is no unconfirmed request then.
	if _, err := s.ApproveRequest(ctx, "l@example.org", 6, "cli:root"); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("approve of no request: %v", err)
	}
	if _, _, err := s.OpenRequest(ctx, "l@example.org", "gina@x.example", RequestSubscribe, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, "UPDATE requests SET state = ? WHERE id = 6", requestApprove); err != nil {
		t.Fatal(err)
	}
	if o, err := s.ApproveRequest(ctx, "l@example.org", 6, "cli:root"); err != nil || !o.Welcome {
		t.Fatalf("approve gina: %+v, %v", o, err)
	}
	gone, err := s.ExpireRequests(ctx, created.Add(welcomeTTL+time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, r := range gone {
		ids = append(ids, r.ID)
	}
	if diff := cmp.Diff([]int64{2, 3, 4}, ids); diff != "" {
		t.Errorf("expired requests (-want +got):\n%s", diff)
	}
	if n, err := hasRow(ctx, s.db, "SELECT 1 FROM requests WHERE id = 6"); err != nil || n {
		t.Errorf("the lapsed welcome is still there (%v)", err)
	}
}
