//go:build !unix

package queuegroups

// openFileLimit is unknown here.
func openFileLimit() (int, bool) { return 0, false }
