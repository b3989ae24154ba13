package queuegroups

import "runtime"

// Deliveries in progress each hold about one socket (the connection, or
// the DNS query before it) and some 30 to 100 KiB of buffers, stack and
// envelope. The automatic MaxQueueChildren leaves reservedFiles
// descriptors for everything else (SMTP sessions, journal segments, the
// list store, DNS) and gives deliveries half of the rest, so a burst of
// closing connections still fits; and it gives each core at most
// childrenPerCPU. Waiting costs no core, but every exchange does, and on
// a big fan-out the first seconds are all exchanges: with 4,096
// deliveries on two cores each round trip waited behind thousands of
// others, the few deliveries of a throttling provider (the run's longest
// path) crawled, and the heap doubled. 128 per core still keeps a core
// busy on 100 ms round trips (a few exchanges per delivery each round
// trip) while a hundred tarpits or black holes each hold one, and keeps
// a 1,000,000-member post on two cores near 200 MB (256 per core: near
// 290 MB, for a median in the emulated Internet no better beyond noise).
// The result never goes below minAutoChildren, nor above maxAutoChildren.
const (
	reservedFiles   = 1024
	childrenPerCPU  = 128
	minAutoChildren = 64
	maxAutoChildren = 4096
)

// AutoQueueChildren is the MaxQueueChildren used when none is set: from
// the process's limit on open files (which Go raises to the hard limit at
// start) and its cores, within bounds.
func AutoQueueChildren() int {
	n, ok := openFileLimit()
	if !ok {
		return minAutoChildren
	}
	return autoChildren(n, runtime.GOMAXPROCS(0))
}

// autoChildren is AutoQueueChildren for files open files and cpus cores.
func autoChildren(files, cpus int) int {
	return min(max(min((files-reservedFiles)/2, childrenPerCPU*cpus), minAutoChildren), maxAutoChildren)
}
