package expander

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/internal/testutil"
	"fanmail/lists"
)

func testStore(t testing.TB, lists_ ...string) *lists.Store {
	t.Helper()
	store, err := lists.Open(filepath.Join(t.TempDir(), "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for _, l := range lists_ {
		if err := store.CreateList(context.Background(), l, "owner@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

func TestUnknownCache(t *testing.T) {
	t.Parallel()
	c := newUnknownCache(4)
	for i := range 20 {
		c.add(fmt.Sprint(i))
		c.has("0") // asked for on every turn: it must survive
		if n := c.len(); n > 8 {
			t.Fatalf("after %d adds the cache holds %d entries, want at most 2×4", i+1, n)
		}
	}
	if !c.has("0") {
		t.Error("an entry asked for on every turn was dropped")
	}
	if !c.has("19") || c.has("5") {
		t.Error("want the newest entries kept and old unused ones dropped")
	}
	c.reset()
	if c.len() != 0 || c.has("19") {
		t.Error("reset kept entries")
	}
}

// However many unknown addresses are looked up, the expander remembers a
// bounded number of them, and none in the cache of what exists.
func TestUnknownAnswersBounded(t *testing.T) {
	t.Parallel()
	x := New(testStore(t, "announce@lists.example.org"), "fanmail.test", nil)
	x.unknown = newUnknownCache(100)
	ctx := context.Background()
	for i := range 1000 {
		for _, form := range []string{"nobody%d@lists.example.org", "owner-nobody%d@lists.example.org", "nobody%d-request@elsewhere.example"} {
			if _, err := x.Lookup(ctx, fmt.Sprintf(form, i)); !errors.Is(err, ErrUnknownRecipient) {
				t.Fatalf("Lookup: %v, want ErrUnknownRecipient", err)
			}
		}
	}
	if _, err := x.Lookup(ctx, "Announce@Lists.Example.org"); err != nil {
		t.Fatal(err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if n := x.unknown.len(); n > 200 {
		t.Errorf("%d unknown addresses cached, want at most 200", n)
	}
	if diff := cmp.Diff([]string{"announce@lists.example.org"}, keys(x.addresses)); diff != "" {
		t.Errorf("addresses cached as existing (-want +got):\n%s", diff)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// An address cached as unknown is found once a list is created there.
func TestUnknownForgottenWhenStoreChanges(t *testing.T) {
	t.Parallel()
	store := testStore(t)
	x := New(store, "fanmail.test", nil)
	ctx := context.Background()
	if _, err := x.Lookup(ctx, "new@lists.example.org"); !errors.Is(err, ErrUnknownRecipient) {
		t.Fatalf("before: %v", err)
	}
	if err := store.CreateList(ctx, "new@lists.example.org", ""); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "a new list to be known", func() bool {
		_, err := x.Lookup(ctx, "new@lists.example.org")
		return err == nil
	})
}

// The cost of an RCPT for an address that names nothing, with and
// without the negative cache (BENCHMARKS.md).
func BenchmarkLookupUnknown(b *testing.B) {
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("list%d@lists.example.org", i)
	}
	x := New(testStore(b, names...), "fanmail.test", nil)
	ctx := context.Background()
	for _, form := range []string{"nobody%d@lists.example.org", "owner-nobody%d@lists.example.org"} {
		b.Run(form[:6]+"/uncached", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := x.resolve(ctx, fmt.Sprintf(form, i)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(form[:6]+"/cached", func(b *testing.B) {
			rcpt := fmt.Sprintf(form, -1)
			for b.Loop() {
				if _, err := x.Lookup(ctx, rcpt); !errors.Is(err, ErrUnknownRecipient) {
					b.Fatal(err)
				}
			}
		})
	}
}
