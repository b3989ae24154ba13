//go:build fanmail_testhooks

package main

import (
	"context"
	"os"
	"syscall"
	"time"

	"fanmail/envelope"
	"fanmail/queuegroups"
)

// The end-to-end tests build fanmail with the fanmail_testhooks tag to
// reach code paths no real input should: delivery to the domain in
// FANMAIL_TEST_PANIC_DOMAIN panics, and delivery to the domain in
// FANMAIL_TEST_KILL_DOMAIN kills the process with SIGKILL. A build
// without the tag has neither.
func testDeliverer(d queuegroups.Deliverer) queuegroups.Deliverer {
	panicDomain, killDomain := os.Getenv("FANMAIL_TEST_PANIC_DOMAIN"), os.Getenv("FANMAIL_TEST_KILL_DOMAIN")
	return queuegroups.Wrap(d, func(ctx context.Context, req envelope.Request, next queuegroups.Deliverer) []envelope.Result {
		switch req.Domain {
		case "":
		case panicDomain:
			panic("test hook: delivery to " + req.Domain + " panics")
		case killDomain:
			// The attempt is on record by now; the pause lets the session
			// that queued the post read its 250 first, which a real crash
			// would not wait for but the tests' bookkeeping needs.
			time.Sleep(500 * time.Millisecond)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return next.Deliver(ctx, req)
	})
}
