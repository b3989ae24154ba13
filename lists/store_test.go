package lists

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var created = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// rawDB writes a lists.db in a new directory with queries run on it
// directly, for tests of what Open makes of a store it did not write,
// and returns its path.
func rawDB(t testing.TB, queries ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lists.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range queries {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func testCreateList(t *testing.T, be backend) {
	t.Parallel()
	tests := []struct {
		name, list, owner string
		wantErr           string // substring; "" = success
		is                error
		want              List
	}{
		{name: "plain", list: "announce@example.org", owner: "alice@example.org",
			want: List{Address: "announce@example.org", Owner: "alice@example.org"}},
		{name: "normalized", list: " <News@Example.ORG> ", owner: "<Bob@EXAMPLE.com>",
			want: List{Address: "News@example.org", Owner: "Bob@example.com"}},
		{name: "no owner", list: "x@example.org",
			want: List{Address: "x@example.org"}},
		{name: "exists", list: "dup@example.org", is: ErrListExists, wantErr: "list already exists"},
		{name: "exists other case", list: "DUP@Example.org", is: ErrListExists, wantErr: "list already exists"},
		{name: "bad list", list: "bob@@x", wantErr: `list address "bob@@x": more than one @`},
		{name: "bad owner", list: "y@example.org", owner: "alice", wantErr: `owner address "alice": missing @`},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := be.withList(t, "dup@example.org")
			err := s.CreateList(ctx, tt.list, tt.owner)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CreateList(%q, %q) = %v, want error containing %q", tt.list, tt.owner, err, tt.wantErr)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("error %v is not %v", err, tt.is)
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateList(%q, %q): %v", tt.list, tt.owner, err)
			}
			got, err := s.GetList(ctx, tt.list)
			if err != nil {
				t.Fatalf("GetList: %v", err)
			}
			tt.want.Created = created
			if diff := cmp.Diff(tt.want, got, cmpTime); diff != "" {
				t.Errorf("GetList (-want +got):\n%s", diff)
			}
		})
	}
}

var cmpTime = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

func testGetListLookup(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, "Announce@lists.example.org")
	tests := []struct {
		lookup string
		want   string // "" = ErrNoList
	}{
		{"Announce@lists.example.org", "Announce@lists.example.org"},
		{"announce@LISTS.example.org", "Announce@lists.example.org"},
		{"<ANNOUNCE@lists.example.org>", "Announce@lists.example.org"},
		{"other@lists.example.org", ""},
		{"announce", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := s.GetList(ctx, tt.lookup)
		if tt.want == "" {
			if !errors.Is(err, ErrNoList) {
				t.Errorf("GetList(%q) = %+v, %v; want ErrNoList", tt.lookup, got, err)
			}
			continue
		}
		if err != nil || got.Address != tt.want {
			t.Errorf("GetList(%q) = %+v, %v; want %s", tt.lookup, got, err, tt.want)
		}
	}
}

func testListsAndDelete(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s, _ := be.openNew(t)
	for _, l := range []string{"b@example.org", "a@example.org", "c@example.org"} {
		if err := s.CreateList(ctx, l, ""); err != nil {
			t.Fatal(err)
		}
	}
	addMembers(t, s, "b@example.org", "x@y.org", "z@y.org")
	if err := s.DeleteList(ctx, "C@EXAMPLE.ORG"); err != nil {
		t.Fatalf("DeleteList: %v", err)
	}
	if err := s.DeleteList(ctx, "c@example.org"); !errors.Is(err, ErrNoList) {
		t.Errorf("second DeleteList = %v, want ErrNoList", err)
	}
	got, err := s.Lists(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []List{
		{Address: "a@example.org", Created: created},
		{Address: "b@example.org", Created: created, Members: 2},
	}
	if diff := cmp.Diff(want, got, cmpTime); diff != "" {
		t.Errorf("Lists (-want +got):\n%s", diff)
	}

	// Deleting a list deletes its members (ON DELETE CASCADE).
	if err := s.DeleteList(ctx, "b@example.org"); err != nil {
		t.Fatal(err)
	}
	if n, err := count(s, "members"); err != nil || n != 0 {
		t.Errorf("members left after DeleteList: %d, %v", n, err)
	}
}

func testOpenNewerSchema(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s, target := be.openNew(t)
	err := s.write(ctx, func(tx *sql.Tx) error { return s.d.setSchemaVersion(ctx, tx, 99) })
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Open(target)
	if err == nil {
		s2.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
	if !errors.Is(err, ErrSchemaNewer) {
		t.Errorf("Open error %q does not wrap ErrSchemaNewer", err)
	}
	if want := fmt.Sprintf("schema version 99, this fanmail knows versions up to %d; upgrade fanmail", len(migrations)); !strings.Contains(err.Error(), want) {
		t.Errorf("Open error %q does not contain %q", err, want)
	}
}

func TestOpenExisting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lists.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateList(ctx, "a@example.org", ""); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openPath(t, path)
	if _, err := s2.GetList(ctx, "a@example.org"); err != nil {
		t.Errorf("reopened store lost the list: %v", err)
	}
	var mode string
	if err := s2.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

// TestSecondProcess uses two Stores on one file, as the server and the
// CLI do, and checks that each sees the other's commits and that Version
// moves on every commit, its own included.
func testSecondProcess(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	server, path := be.openNew(t)
	cli := be.open(t, path)

	version := func(s *Store) int64 {
		t.Helper()
		v, err := s.Version(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	steps := []struct {
		name  string
		by    *Store
		apply func(*Store) error
	}{
		{"cli creates", cli, func(s *Store) error { return s.CreateList(ctx, "l@example.org", "") }},
		{"cli adds", cli, func(s *Store) error {
			_, err := s.AddMembers(ctx, "l@example.org", []string{"a@x.org", "b@x.org"})
			return err
		}},
		{"server adds", server, func(s *Store) error {
			_, err := s.AddMembers(ctx, "l@example.org", []string{"c@x.org"})
			return err
		}},
		{"cli removes", cli, func(s *Store) error {
			_, err := s.RemoveMembers(ctx, "l@example.org", []string{"a@x.org"})
			return err
		}},
	}
	for _, step := range steps {
		before := map[*Store]int64{server: version(server), cli: version(cli)}
		if err := step.apply(step.by); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for s, name := range map[*Store]string{server: "server", cli: "cli"} {
			if v := version(s); v == before[s] {
				t.Errorf("%s: %s Version still %d after the commit", step.name, name, v)
			}
		}
	}
	// A read commits nothing and must not move the version.
	before := version(server)
	if _, err := cli.Members(ctx, "l@example.org"); err != nil {
		t.Fatal(err)
	}
	if v := version(server); v != before {
		t.Errorf("Version moved from %d to %d after a read", before, v)
	}
	got, err := server.Members(ctx, "l@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"b@x.org", "c@x.org"}, got); diff != "" {
		t.Errorf("server sees members (-want +got):\n%s", diff)
	}
}

// TestConcurrentWriters checks that writers in two "processes" wait for
// each other (busy_timeout, BEGIN IMMEDIATE) instead of failing. It runs
// alone, and with few enough writers that the last one's wait stays far
// below busy_timeout even on a loaded machine under the race detector.
func testConcurrentWriters(t *testing.T, be backend) {
	ctx := context.Background()
	a, path := be.openNew(t)
	b := be.open(t, path)
	if err := a.CreateList(ctx, "l@example.org", ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	const writers = 16
	errs := make(chan error, 2*writers)
	for i := range writers {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			batch := make([]string, 200)
			for j := range batch {
				batch[j] = fmt.Sprintf("m%d-%d@example.com", i, j)
			}
			if _, err := s.AddMembers(ctx, "l@example.org", batch); err != nil {
				errs <- err
			}
			if _, err := s.Members(ctx, "l@example.org"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	l, err := b.GetList(ctx, "l@example.org")
	if err != nil || l.Members != writers*200 {
		t.Errorf("GetList = %+v, %v; want %d members", l, err, writers*200)
	}
}
