//go:build !fanmail_testhooks

package main

import "fanmail/queuegroups"

// testDeliverer is the identity outside test builds (see testhooks.go).
func testDeliverer(d queuegroups.Deliverer) queuegroups.Deliverer { return d }
