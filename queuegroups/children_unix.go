//go:build unix

package queuegroups

import "syscall"

// openFileLimit is the soft RLIMIT_NOFILE.
func openFileLimit() (int, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return int(min(rl.Cur, 1<<30)), true
}
