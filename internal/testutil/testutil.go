// Package testutil holds the small helpers that the tests of several
// packages share; only _test.go files import it. The fake network the
// tests talk to is internal/fakenet.
package testutil

import (
	"bytes"
	"sync"
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
