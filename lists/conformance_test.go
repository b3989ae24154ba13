package lists

import (
	"path/filepath"
	"testing"
	"time"

	"fanmail/internal/pgtest"
)

// The conformance suite: every test of the store's behaviour runs
// against both databases, through a backend that makes fresh ones.
// Tests of what only one database has (the SQLite file's modes and
// journal mode, its first schema) are plain tests beside them.
var conformance = []struct {
	name string
	fn   func(*testing.T, backend)
}{
	{"CreateList", testCreateList},
	{"GetListLookup", testGetListLookup},
	{"ListsAndDelete", testListsAndDelete},
	{"OpenNewerSchema", testOpenNewerSchema},
	{"SecondProcess", testSecondProcess},
	{"ConcurrentWriters", testConcurrentWriters},
	{"Members", testMembers},
	{"MembersNoList", testMembersNoList},
	{"AddMembersProgress", testAddMembersProgress},
	{"AddMembersImport", testAddMembersImport},
	{"AddMembersLarge", testAddMembersLarge},
	{"AddMembersCancelled", testAddMembersCancelled},
	{"FindList", testFindList},
	{"AddPostAndRead", testAddPostAndRead},
	{"Decide", testDecide},
	{"ModerationTokens", testModerationTokens},
	{"ClaimOnce", testClaimOnce},
	{"PostsFilterAndExpire", testPostsFilterAndExpire},
	{"ClaimNotice", testClaimNotice},
	{"DecideEach", testDecideEach},
	{"DecideEachConcurrent", testDecideEachConcurrent},
	{"ReleaseClaim", testReleaseClaim},
	{"PostsFrom", testPostsFrom},
	{"SettingsDefaults", testSettingsDefaults},
	{"SetSettings", testSetSettings},
	{"SetSettingsBad", testSetSettingsBad},
	{"Moderators", testModerators},
	{"IsMember", testIsMember},
	{"Copy", testCopy},
	{"CopyRefusesNonEmpty", testCopyRefusesNonEmpty},
	{"CopyCoversEveryTable", testCopyCoversEveryTable},
	{"ConfirmRoundTrip", testConfirmRoundTrip},
	{"ModeratedSubscription", testModeratedSubscription},
	{"AllowAnswer", testAllowAnswer},
	{"RequestsList", testRequestsList},
	{"DecideRequests", testDecideRequests},
	{"RequestWelcome", testRequestWelcome},
	{"MemberBounces", testMemberBounces},
	{"Nodes", testNodes},
}

// runConformance runs the suite on the stores be opens.
func runConformance(t *testing.T, be backend) {
	for _, c := range conformance {
		t.Run(c.name, func(t *testing.T) { c.fn(t, be) })
	}
}

func TestConformanceSQLite(t *testing.T) {
	t.Parallel()
	runConformance(t, sqliteBackend())
}

func TestConformancePostgres(t *testing.T) {
	t.Parallel()
	runConformance(t, postgresBackend(pgtest.Start(t)))
}

// backend opens stores: fresh returns the target (what Open takes) of a
// new, empty database; every open of one target is another process on
// the same database.
type backend struct {
	name  string
	fresh func(t testing.TB) string
}

func sqliteBackend() backend {
	return backend{name: "sqlite", fresh: func(t testing.TB) string {
		return filepath.Join(t.TempDir(), "lists.db")
	}}
}

func postgresBackend(c *pgtest.Cluster) backend {
	return backend{name: "postgres", fresh: c.NewDatabase}
}

// open opens target with a fixed clock, closed when the test ends.
func (be backend) open(t testing.TB, target string) *Store {
	t.Helper()
	s, err := Open(target)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.now = func() time.Time { return created }
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// openNew opens a store on a fresh database and returns its target.
func (be backend) openNew(t testing.TB) (*Store, string) {
	t.Helper()
	target := be.fresh(t)
	return be.open(t, target), target
}

// withList opens a fresh store holding the lists named, without owners
// or members.
func (be backend) withList(t testing.TB, lists ...string) *Store {
	t.Helper()
	s, _ := be.openNew(t)
	for _, list := range lists {
		if err := s.CreateList(t.Context(), list, ""); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// openPath and openWithList are the SQLite store for the tests of what
// only the file has, and for tests not yet in the suite.
func openPath(t testing.TB, path string) *Store { return sqliteBackend().open(t, path) }

// addMembers adds addrs to list, failing the test on an error.
func addMembers(t testing.TB, s *Store, list string, addrs ...string) {
	t.Helper()
	if _, err := s.AddMembers(t.Context(), list, addrs); err != nil {
		t.Fatal(err)
	}
}

// count returns the number of rows in table.
func count(s *Store, table string) (int, error) {
	var n int
	err := s.db.QueryRow("SELECT count(*) FROM " + table).Scan(&n)
	return n, err
}

func openWithList(t testing.TB, lists ...string) *Store { return sqliteBackend().withList(t, lists...) }
