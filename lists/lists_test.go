package lists

import (
	"context"
	"errors"
	"testing"
)

// testFindList: FindList answers what GetList does, case-insensitively,
// without the member count.
func testFindList(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, "Talk@Example.org")
	addMembers(t, s, "talk@example.org", "a@example.net", "b@example.net")
	full, err := s.GetList(ctx, "talk@example.org")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.FindList(ctx, "TALK@example.ORG")
	if err != nil {
		t.Fatal(err)
	}
	if full.Members != 2 || got.Members != 0 || got.Address != full.Address || got.Owner != full.Owner || !got.Created.Equal(full.Created) {
		t.Errorf("FindList = %+v, GetList = %+v", got, full)
	}
	if _, err := s.FindList(ctx, "nope@example.org"); !errors.Is(err, ErrNoList) {
		t.Errorf("missing list: %v, want ErrNoList", err)
	}
}

// BenchmarkFindList is the server's lookup of a list on each RCPT and
// delivery, on a list with members (which FindList does not count).
func BenchmarkFindList(b *testing.B) {
	ctx := context.Background()
	s := openWithList(b, "l@example.org")
	addMembers(b, s, "l@example.org", members100k()[:1000]...)
	for b.Loop() {
		if _, err := s.FindList(ctx, "L@example.org"); err != nil {
			b.Fatal(err)
		}
	}
}
