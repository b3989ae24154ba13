package listmail

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"fanmail/internal/testutil"
	"fanmail/queuegroups"
)

// failQueue refuses everything, as a full disk would.
type failQueue struct{}

func (failQueue) Enqueue(context.Context, *queuegroups.Message) error {
	return errors.New("no space left on device")
}

// TestWelcomeAfterApprovalOnServer: a subscription approved on the
// server (fanmail member approve) gets, at the next tick, the welcome a
// moderator's approval by mail gets, once; a queue that refuses it
// leaves it for the next tick; a member gone by then gets none.
func TestWelcomeAfterApprovalOnServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const l = "dev@lists.example.org"
	f := newFixture(t, l, "owner@example.org")
	f.setSettings(t, l, [][2]string{{"subscribe_policy", "moderate"}})
	if _, err := f.store.AddModerators(ctx, l, []string{"mod@example.org"}); err != nil {
		t.Fatal(err)
	}
	// bob and carol subscribe and confirm: requests 1 and 2 wait for a
	// moderator, who is told how to approve on the server too.
	for i, who := range []string{"bob@x.example", "carol@x.example"} {
		f.deliver(t, who, msg(who, "subscribe", ""), "dev-request@lists.example.org")
		confirm := testutil.ReplyTo(t, f.q.take()[0].data)
		f.deliver(t, who, msg(who, "Re: Confirm", "yes"), confirm)
		out := f.q.take()
		if len(out) != 2 || out[0].to != "mod@example.org" {
			t.Fatalf("after %s confirmed, sent %+v", who, out)
		}
		want := []byte("On the server: fanmail member approve dev@lists.example.org " + string(rune('1'+i)))
		if !bytes.Contains(out[0].data, want) {
			t.Errorf("the moderator's notice lacks %q:\n%s", want, out[0].data)
		}
	}
	for _, id := range []int64{1, 2} {
		if o, err := f.store.ApproveRequest(ctx, l, id, "cli:root"); err != nil || !o.Welcome {
			t.Fatalf("approve %d: %+v, %v", id, o, err)
		}
	}
	if _, err := f.store.RemoveMembers(ctx, l, []string{"carol@x.example"}); err != nil {
		t.Fatal(err)
	}

	// The queue refuses: the welcome waits.
	f.svc.SetQueue(failQueue{})
	if err := f.svc.Tick(ctx); err == nil || !strings.Contains(err.Error(), "welcome bob@x.example to dev@lists.example.org: ") {
		t.Errorf("tick with a failing queue: %v", err)
	}
	f.svc.SetQueue(f.q)
	var got []string
	for range 2 {
		if err := f.svc.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		for _, m := range f.q.take() {
			if !bytes.Contains(m.data, []byte("Subject: Welcome to dev@lists.example.org")) ||
				!bytes.Contains(m.data, []byte("bob@x.example is now a member of dev@lists.example.org")) {
				t.Errorf("not a welcome:\n%s", m.data)
			}
			got = append(got, m.from+" -> "+m.to)
		}
	}
	if diff := cmp.Diff([]string{"dev-bounces@lists.example.org -> bob@x.example"}, got); diff != "" {
		t.Errorf("welcomes sent over two ticks (-want +got):\n%s", diff)
	}
	if w, err := f.store.Welcomes(ctx); err != nil || len(w) != 0 {
		t.Errorf("welcomes left: %+v, %v", w, err)
	}
}
