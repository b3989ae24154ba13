package lists

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"fanmail/internal/pgtest"
)

func testMembers(t *testing.T, be backend) {
	t.Parallel()
	const list = "l@example.org"
	tests := []struct {
		name        string
		initial     []string // added first
		add, remove []string
		wantAdded   int
		wantRemoved int
		wantErr     string // substring of the error from add or remove
		want        []string
	}{
		{
			name:      "ordered by domain then address",
			add:       []string{"zed@a.org", "bob@c.org", "amy@b.org", "al@a.org"},
			wantAdded: 4,
			want:      []string{"al@a.org", "zed@a.org", "amy@b.org", "bob@c.org"},
		},
		{
			name:      "duplicates in input and already present",
			initial:   []string{"bob@example.com"},
			add:       []string{"Bob@Example.COM", "bob@EXAMPLE.com", "carol@example.com", "carol@example.com", "<bob@example.com>"},
			wantAdded: 2,
			want:      []string{"Bob@example.com", "bob@example.com", "carol@example.com"},
		},
		{
			name:      "quoted and literal addresses stored normalized",
			add:       []string{`"a b"@X.org`, `"plain"@x.org`, "c@[IPv6:2001:DB8::1]"},
			wantAdded: 3,
			want:      []string{"c@[IPv6:2001:db8::1]", `"a b"@x.org`, "plain@x.org"},
		},
		{
			name:    "one bad address applies nothing",
			initial: []string{"keep@x.org"},
			add:     []string{"new@x.org", "bob@@x", "also@x.org", "no-at"},
			wantErr: "2 bad addresses, nothing applied:\n\"bob@@x\": more than one @ (quote the local part if it really contains @)\n\"no-at\": missing @",
			want:    []string{"keep@x.org"},
		},
		{
			name:        "remove some, absent ones skipped, domain case ignored",
			initial:     []string{"a@x.org", "b@x.org", "c@y.org"},
			remove:      []string{"A@x.org", "b@X.ORG", "nobody@x.org", "c@y.org", "c@y.org"},
			wantRemoved: 2,
			want:        []string{"a@x.org"},
		},
		{
			name:    "bad address in remove applies nothing",
			initial: []string{"a@x.org", "b@x.org"},
			remove:  []string{"a@x.org", "b@"},
			wantErr: `1 bad address, nothing applied:` + "\n" + `"b@": missing domain`,
			want:    []string{"a@x.org", "b@x.org"},
		},
		{
			name: "empty list",
			want: []string{},
		},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := be.withList(t, list)
			addMembers(t, s, list, tt.initial...)
			var errs []error
			if tt.add != nil {
				added, err := s.AddMembers(ctx, list, tt.add)
				errs = append(errs, err)
				if added != tt.wantAdded {
					t.Errorf("AddMembers added %d, want %d", added, tt.wantAdded)
				}
			}
			if tt.remove != nil {
				removed, err := s.RemoveMembers(ctx, list, tt.remove)
				errs = append(errs, err)
				if removed != tt.wantRemoved {
					t.Errorf("RemoveMembers removed %d, want %d", removed, tt.wantRemoved)
				}
			}
			err := errors.Join(errs...)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error = %v\nwant it to contain %q", err, tt.wantErr)
			}
			checkMembers(t, s, list, tt.want)
			// EachMember streams the same members in the same order,
			// each with its domain.
			streamed := []string{}
			err = s.EachMember(ctx, list, func(addr, domain string) error {
				if at := strings.LastIndexByte(addr, '@'); addr[at+1:] != domain {
					t.Errorf("EachMember gave %s with domain %s", addr, domain)
				}
				streamed = append(streamed, addr)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, streamed); diff != "" {
				t.Errorf("EachMember (-want +got):\n%s", diff)
			}
		})
	}
}

func testMembersNoList(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, "other@example.org")
	ops := map[string]func() error{
		"Members": func() error { _, err := s.Members(ctx, "l@example.org"); return err },
		"EachMember": func() error {
			return s.EachMember(ctx, "l@example.org", func(string, string) error { return nil })
		},
		"AddMembers": func() error {
			_, err := s.AddMembers(ctx, "l@example.org", []string{"a@x.org"})
			return err
		},
		"RemoveMembers": func() error {
			_, err := s.RemoveMembers(ctx, "l@example.org", []string{"a@x.org"})
			return err
		},
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, ErrNoList) {
			t.Errorf("%s on a missing list = %v, want ErrNoList", name, err)
		}
	}
}

func testAddMembersProgress(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, "l@example.org")
	addrs := make([]string, 2*progressEvery+1)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("m%d@example.com", i)
	}
	var got [][2]int
	added, err := s.AddMembersProgress(ctx, "l@example.org", addrs, func(done, total int) {
		got = append(got, [2]int{done, total})
	})
	if err != nil || added != len(addrs) {
		t.Fatalf("AddMembersProgress = %d, %v", added, err)
	}
	n := len(addrs)
	want := [][2]int{{progressEvery, n}, {2 * progressEvery, n}, {n, n}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("progress calls (-want +got):\n%s", diff)
	}
}

// members100k is a list of 100,000 distinct addresses spread over 500
// domains, the size the CLI import must handle in seconds.
func members100k() []string {
	addrs := make([]string, 100_000)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("user%06d@domain%03d.example", i, i%500)
	}
	return addrs
}

// BenchmarkAddMembers100k imports 100,000 members into a new list, on
// SQLite and on a durable (fsync on) PostgreSQL cluster of its own.
func BenchmarkAddMembers100k(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchAddMembers(b, sqliteBackend(), 0) })
	b.Run("postgres", func(b *testing.B) {
		benchAddMembers(b, postgresBackend(pgtest.StartOptions(b, pgtest.Options{Durable: true})), 0)
	})
}

// BenchmarkAddMembers100kHalfPresent imports the same 100,000 members
// into a list that already has half of them: the import that skips.
func BenchmarkAddMembers100kHalfPresent(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchAddMembers(b, sqliteBackend(), 50_000) })
	b.Run("postgres", func(b *testing.B) {
		benchAddMembers(b, postgresBackend(pgtest.StartOptions(b, pgtest.Options{Durable: true})), 50_000)
	})
}

// benchAddMembers times the import of members100k into a new list that
// holds the first present of them already.
func benchAddMembers(b *testing.B, be backend, present int) {
	ctx := context.Background()
	addrs := members100k()
	for b.Loop() {
		b.StopTimer()
		s := be.withList(b, "l@example.org")
		addMembers(b, s, "l@example.org", addrs[:present]...)
		b.StartTimer()
		n, err := s.AddMembers(ctx, "l@example.org", addrs)
		if err != nil || n != len(addrs)-present {
			b.Fatalf("AddMembers = %d, %v; want %d", n, err, len(addrs)-present)
		}
	}
}

func BenchmarkMembers100k(b *testing.B) {
	ctx := context.Background()
	s := openWithList(b, "l@example.org")
	addMembers(b, s, "l@example.org", members100k()...)
	for b.Loop() {
		m, err := s.Members(ctx, "l@example.org")
		if err != nil || len(m) != 100_000 {
			b.Fatalf("Members = %d, %v", len(m), err)
		}
	}
}

// checkMembers fails t unless list's members are want, in the store's
// order.
func checkMembers(t *testing.T, s *Store, list string, want []string) {
	t.Helper()
	got, err := s.Members(context.Background(), list)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Members of %s (-want +got):\n%s", list, diff)
	}
}
