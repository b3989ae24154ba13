package lists

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The edges of a bulk member import (AddMembersProgress), which each
// database runs its own way (SQLite: multi-row INSERTs; PostgreSQL:
// COPY into a temporary table, then one INSERT ... SELECT): both must
// count, skip and refuse the same.

func testAddMembersImport(t *testing.T, be backend) {
	t.Parallel()
	const list, other = "l@example.org", "other@example.org"
	tests := []struct {
		name      string
		initial   []string // on list before the import
		onOther   []string // on the other list before the import
		add       []string
		wantAdded int
		wantErr   string
		want      []string
	}{
		{
			name:    "empty input adds nothing",
			initial: []string{"a@x.org"},
			add:     []string{},
			want:    []string{"a@x.org"},
		},
		{
			name:      "duplicates in the input differing in case",
			add:       []string{"Ann@x.org", "ann@X.org", "ann@x.org", "ANN@x.org", "Ann@X.ORG", "<ann@x.org>"},
			wantAdded: 3,
			want:      []string{"ANN@x.org", "Ann@x.org", "ann@x.org"},
		},
		{
			name:      "a local part in another case is another member",
			initial:   []string{"bob@x.org"},
			add:       []string{"Bob@x.org", "bob@X.ORG"},
			wantAdded: 1,
			want:      []string{"Bob@x.org", "bob@x.org"},
		},
		{
			name:    "every address already a member",
			initial: []string{"a@x.org", "b@y.org"},
			add:     []string{"b@Y.org", "a@x.org", "a@X.org"},
			want:    []string{"a@x.org", "b@y.org"},
		},
		{
			name:      "members of another list do not count",
			onOther:   []string{"a@x.org", "b@x.org"},
			initial:   []string{"b@x.org"},
			add:       []string{"a@x.org", "b@x.org", "c@x.org"},
			wantAdded: 2,
			want:      []string{"a@x.org", "b@x.org", "c@x.org"},
		},
		{
			name:    "a bad address last rolls back the rest",
			initial: []string{"keep@x.org"},
			add:     append(numbered(3*progressEvery, "new%d@x.org"), "bad@"),
			wantErr: `1 bad address, nothing applied:` + "\n" + `"bad@": missing domain`,
			want:    []string{"keep@x.org"},
		},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := be.withList(t, list, other)
			addMembers(t, s, list, tt.initial...)
			addMembers(t, s, other, tt.onOther...)
			added, err := s.AddMembers(ctx, list, tt.add)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("AddMembers: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("AddMembers error = %v\nwant it to contain %q", err, tt.wantErr)
			}
			if added != tt.wantAdded {
				t.Errorf("AddMembers added %d, want %d", added, tt.wantAdded)
			}
			checkMembers(t, s, list, tt.want)
			checkMembers(t, s, other, append([]string{}, tt.onOther...))
		})
	}
}

// numbered returns n addresses made from format and 0..n-1.
func numbered(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// testAddMembersLarge imports more than one progress step of members,
// a third already on the list and a third given twice: the count and
// the progress calls follow the input, the store keeps each member once
// with its domain, and another process's Version sees the change.
func testAddMembersLarge(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	const list = "l@example.org"
	cli, target := be.openNew(t)
	if err := cli.CreateList(ctx, list, ""); err != nil {
		t.Fatal(err)
	}
	server := be.open(t, target)
	const n = 3 * progressEvery
	all := make([]string, n)
	want := map[string]string{} // normalized address: domain
	for i := range all {
		all[i] = fmt.Sprintf("user%05d@Domain%d.example", i, i%7)
		domain := fmt.Sprintf("domain%d.example", i%7)
		want[fmt.Sprintf("user%05d@%s", i, domain)] = domain
	}
	addMembers(t, cli, list, all[:n/3]...)
	before, err := server.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	input := append(append([]string{}, all...), all[n/3:2*n/3]...) // all, then the middle third again
	var calls [][2]int
	added, err := cli.AddMembersProgress(ctx, list, input, func(done, total int) { calls = append(calls, [2]int{done, total}) })
	if err != nil || added != n-n/3 {
		t.Fatalf("AddMembersProgress = %d, %v; want %d, nil", added, err, n-n/3)
	}
	var wantCalls [][2]int
	for done := progressEvery; done < len(input); done += progressEvery {
		wantCalls = append(wantCalls, [2]int{done, len(input)})
	}
	wantCalls = append(wantCalls, [2]int{len(input), len(input)})
	if diff := cmp.Diff(wantCalls, calls); diff != "" {
		t.Errorf("progress calls (-want +got):\n%s", diff)
	}
	if after, err := server.Version(ctx); err != nil || after == before {
		t.Errorf("Version after the import = %d, %v; want a change from %d", after, err, before)
	}
	got := map[string]string{}
	err = server.EachMember(ctx, list, func(addr, domain string) error {
		if _, dup := got[addr]; dup {
			t.Errorf("member %s twice", addr)
		}
		got[addr] = domain
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("members and domains (-want +got):\n%s", diff)
	}
}

// testAddMembersCancelled cancels an import halfway, from its progress
// callback: nothing is applied, and the next imports on the same
// connection (the store is cut to one for writing) run as if it never happened.
func testAddMembersCancelled(t *testing.T, be backend) {
	t.Parallel()
	const list = "l@example.org"
	s := be.withList(t, list)
	conns := 1
	if s.Kind() == "sqlite" {
		conns++ // Version's own connection, held for good
	}
	s.db.SetMaxOpenConns(conns)
	addMembers(t, s, list, "keep@x.org")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	added, err := s.AddMembersProgress(ctx, list, numbered(4*progressEvery, "m%d@x.org"), func(done, total int) {
		if done == 2*progressEvery {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || added != 0 {
		t.Errorf("cancelled AddMembersProgress = %d, %v; want 0, context.Canceled", added, err)
	}
	for i, add := range [][]string{{"keep@x.org", "a@x.org"}, {"a@x.org", "b@x.org"}} {
		if added, err := s.AddMembers(context.Background(), list, add); err != nil || added != 1 {
			t.Fatalf("import %d after the cancelled one = %d, %v; want 1, nil", i+1, added, err)
		}
	}
	got, err := s.Members(context.Background(), list)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a@x.org", "b@x.org", "keep@x.org"}, got); diff != "" {
		t.Errorf("Members (-want +got):\n%s", diff)
	}
}
