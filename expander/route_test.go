package expander

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
	"fanmail/queuegroups"
)

// routerOf routes every domain to the default group, cut at r.
func routerOf(t *testing.T, r int) *Router {
	t.Helper()
	router, err := NewRouter(RouterConfig{RecipientsPerEnvelope: map[string]int{queuegroups.DefaultGroup: r}})
	if err != nil {
		t.Fatal(err)
	}
	return router
}

func TestSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		rcpts []string
		r     int
		want  []envelope.Envelope
	}{
		{
			name:  "groups by domain, sorted, cut at r",
			rcpts: []string{"c@b.test", "a@a.test", "b@b.test", "a@b.test"},
			r:     2,
			want: []envelope.Envelope{
				{Group: "default", Domain: "a.test", Recipients: []string{"a@a.test"}},
				{Group: "default", Domain: "b.test", Recipients: []string{"a@b.test", "b@b.test"}},
				{Group: "default", Domain: "b.test", Recipients: []string{"c@b.test"}},
			},
		},
		{
			name:  "duplicates removed, domain case-insensitive, local part kept",
			rcpts: []string{"Bob@Example.TEST", "Bob@example.test", "bob@example.test"},
			r:     100,
			want: []envelope.Envelope{
				{Group: "default", Domain: "example.test", Recipients: []string{"Bob@example.test", "bob@example.test"}},
			},
		},
		{name: "empty", rcpts: nil, r: 100, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, routerOf(t, tt.r).Split("", tt.rcpts)); diff != "" {
				t.Errorf("Split (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSplitEnvelopeCount(t *testing.T) {
	t.Parallel()
	// 1,000 members over 20 domains with r=7: each domain yields
	// ceil(members/7) envelopes and no envelope exceeds r.
	var rcpts []string
	perDomain := map[string]int{}
	for i := 0; i < 1000; i++ {
		d := fmt.Sprintf("d%02d.test", i*i%20)
		perDomain[d]++
		rcpts = append(rcpts, fmt.Sprintf("user%d@%s", i, d))
	}
	got := map[string]int{}
	total := 0
	for _, e := range routerOf(t, 7).Split("", rcpts) {
		if len(e.Recipients) > 7 || len(e.Recipients) == 0 {
			t.Fatalf("envelope for %s has %d recipients", e.Domain, len(e.Recipients))
		}
		got[e.Domain]++
		total += len(e.Recipients)
	}
	if total != 1000 {
		t.Fatalf("%d recipients in envelopes, want 1000", total)
	}
	for d, n := range perDomain {
		if want := (n + 6) / 7; got[d] != want {
			t.Errorf("%s: %d envelopes, want %d", d, got[d], want)
		}
	}
}

// TestSplitRouted checks that each domain lands in the group its rule
// names and is cut by that group's r=.
func TestSplitRouted(t *testing.T) {
	t.Parallel()
	router, err := NewRouter(RouterConfig{
		RecipientsPerEnvelope: map[string]int{"default": 3, "big": 2, "control": 0},
		Rules:                 []Rule{{Patterns: []string{"big.test", "*.big.test"}, Group: "big"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var rcpts []string
	for _, d := range []string{"big.test", "mx.big.test", "small.test"} {
		for i := 0; i < 5; i++ {
			rcpts = append(rcpts, fmt.Sprintf("u%d@%s", i, d))
		}
	}
	got := map[string][]int{}
	groups := map[string]string{}
	for _, e := range router.Split("", rcpts) {
		got[e.Domain] = append(got[e.Domain], len(e.Recipients))
		groups[e.Domain] = e.Group
	}
	want := map[string][]int{"big.test": {2, 2, 1}, "mx.big.test": {2, 2, 1}, "small.test": {3, 2}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("envelope sizes (-want +got):\n%s", diff)
	}
	wantGroups := map[string]string{"big.test": "big", "mx.big.test": "big", "small.test": "default"}
	if diff := cmp.Diff(wantGroups, groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
}
