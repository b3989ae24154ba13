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
	return hooked{SlotsOf: queuegroups.SlotsOf{Next: d}, panicDomain: os.Getenv("FANMAIL_TEST_PANIC_DOMAIN"), killDomain: os.Getenv("FANMAIL_TEST_KILL_DOMAIN")}
}

// hooked passes the agent's Slots on (SlotsOf), which the queue uses to
// admit as many deliveries per destination as it can take.
type hooked struct {
	queuegroups.SlotsOf
	panicDomain, killDomain string
}

func (h hooked) Deliver(ctx context.Context, req envelope.Request) []envelope.Result {
	switch req.Domain {
	case "":
	case h.panicDomain:
		panic("test hook: delivery to " + req.Domain + " panics")
	case h.killDomain:
		// The attempt is on record by now; the pause lets the session
		// that queued the post read its 250 first, which a real crash
		// would not wait for but the tests' bookkeeping needs.
		time.Sleep(500 * time.Millisecond)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return h.Next.Deliver(ctx, req)
}

var _ queuegroups.Slotter = hooked{}
