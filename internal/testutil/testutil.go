// Package testutil holds the small helpers that the tests of several
// packages share; only _test.go files import it. The fake network the
// tests talk to is internal/fakenet.
package testutil

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"testing"

	"fanmail/lists"
)

// SyncBuffer is a buffer safe for concurrent use: a logger writes to it
// from server goroutines while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ListStore opens a list store at dir/lists.db, closed when the test
// ends, holding list, owned by owner, with members.
func ListStore(t testing.TB, dir, list, owner string, members ...string) *lists.Store {
	t.Helper()
	store, err := lists.Open(filepath.Join(dir, "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ctx := context.Background()
	if err := store.CreateList(ctx, list, owner); err != nil {
		t.Fatal(err)
	}
	if len(members) > 0 {
		if _, err := store.AddMembers(ctx, list, members); err != nil {
			t.Fatal(err)
		}
	}
	return store
}
