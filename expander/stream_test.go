package expander

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
	"fanmail/lists"
)

// TestListMembersAreStreamed: a list's part streams its envelopes from
// the store, cut exactly as Split cuts the same members, whether the
// list is small enough to be cached (second post) or not.
func TestListMembersAreStreamed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, n := range []int{0, 7, memberCacheMax + 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			store, err := lists.Open(filepath.Join(t.TempDir(), "lists.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			const list = "big@lists.example.org"
			if err := store.CreateList(ctx, list, ""); err != nil {
				t.Fatal(err)
			}
			var members []string
			for i := range n {
				members = append(members, fmt.Sprintf("m%05d@d%d.test", i, i%13))
			}
			if _, err := store.AddMembers(ctx, list, members); err != nil {
				t.Fatal(err)
			}
			router, err := NewRouter(RouterConfig{RecipientsPerEnvelope: map[string]int{"default": 10}})
			if err != nil {
				t.Fatal(err)
			}
			x := New(store, "fanmail.test", router)
			want := router.Split(BounceAddress(list), members)
			for post := range 2 {
				m, err := x.Expand(ctx, Post{ID: "Q1", Received: time.Now(), Lists: []string{list}, Body: envelope.Bytes("Subject: x\r\n\r\n")})
				if err != nil {
					t.Fatal(err)
				}
				var got []envelope.Envelope
				err = m.Parts[0].Stream(func(e envelope.Envelope) error {
					e.Recipients = slices.Clone(e.Recipients) // the stream reuses them
					got = append(got, e)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("post %d: envelopes (-Split +streamed):\n%s", post, diff)
				}
			}
			x.mu.Lock()
			_, cached := x.members[list]
			x.mu.Unlock()
			if cached != (n <= memberCacheMax) {
				t.Errorf("%d members cached %v, want %v", n, cached, n <= memberCacheMax)
			}
		})
	}
}
