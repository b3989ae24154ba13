//go:build fanmail_testhooks

package main

import (
	"context"
	"os"
	"syscall"

	"fanmail/envelope"
	"fanmail/queuegroups"
)

// The end-to-end tests build fanmail with the fanmail_testhooks tag to
// reach code paths no real input should: delivery to the domain in
// FANMAIL_TEST_PANIC_DOMAIN panics, and delivery to the domain in
// FANMAIL_TEST_KILL_DOMAIN kills the process with SIGKILL. A build
// without the tag has neither.
func testDeliverer(d queuegroups.Deliverer) queuegroups.Deliverer {
	return hooked{Deliverer: d, panicDomain: os.Getenv("FANMAIL_TEST_PANIC_DOMAIN"), killDomain: os.Getenv("FANMAIL_TEST_KILL_DOMAIN")}
}

type hooked struct {
	queuegroups.Deliverer
	panicDomain, killDomain string
}

func (h hooked) Deliver(ctx context.Context, req envelope.Request) []envelope.Result {
	switch req.Domain {
	case "":
	case h.panicDomain:
		panic("test hook: delivery to " + req.Domain + " panics")
	case h.killDomain:
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return h.Deliverer.Deliver(ctx, req)
}

// Busy passes on the agent's answer, which the queue uses to pick
// envelopes whose destination has a free connection.
func (h hooked) Busy(domain string) bool {
	b, ok := h.Deliverer.(interface{ Busy(string) bool })
	return ok && b.Busy(domain)
}
