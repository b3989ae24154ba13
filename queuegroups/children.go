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
// path) crawled, and the heap doubled. 256 per core keeps the first
// transactions to a long tail of slow domains (5 to 200 ms away, a few
// round trips each) going at once, which is where the median recipient
// of a real list's post waits, while a hundred tarpits or black holes
// each hold one. What more deliveries cost in memory is mostly garbage
// between collections, which AutoMemoryLimit bounds.
// The result never goes below minAutoChildren, nor above maxAutoChildren.
const (
	reservedFiles   = 1024
	childrenPerCPU  = 256
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

// The automatic soft memory limit: memoryBase for everything but the
// deliveries (the spool's state, the list store's cache, SMTP sessions,
// the runtime), and memoryPerChild for each delivery the cap allows,
// about three times what one holds live. The server collects garbage
// only once its heap is five times what is live (GOGC 400, for the CPU
// of small posts), so without a limit the garbage of hundreds of
// deliveries, not their live data, made most of a big fan-out's RSS.
const (
	memoryBase     = 96 << 20
	memoryPerChild = 128 << 10
)

// AutoMemoryLimit is the soft memory limit for a server whose deliveries
// in progress are capped at children: 160 MiB for 512.
func AutoMemoryLimit(children int) int64 {
	return memoryBase + int64(children)*memoryPerChild
}
