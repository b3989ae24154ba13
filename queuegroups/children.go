package queuegroups

// Deliveries in progress each hold about one socket (the connection, or
// the DNS query before it) and some 30 KiB of buffers and stack. The
// automatic MaxQueueChildren leaves reservedFiles descriptors for
// everything else (SMTP sessions, journal segments, the list store, DNS)
// and gives deliveries half of the rest, so a burst of closing
// connections still fits; it never goes below minAutoChildren, nor above
// maxAutoChildren, which keeps their memory near 128 MiB.
const (
	reservedFiles   = 1024
	minAutoChildren = 64
	maxAutoChildren = 4096
)

// AutoQueueChildren is the MaxQueueChildren used when none is set: from
// the process's limit on open files (which Go raises to the hard limit at
// start), within bounds.
func AutoQueueChildren() int {
	n, ok := openFileLimit()
	if !ok {
		return minAutoChildren
	}
	return min(max((n-reservedFiles)/2, minAutoChildren), maxAutoChildren)
}
