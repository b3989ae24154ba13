package queuegroups

import (
	"math/rand/v2"
	"time"
)

// backoff is the delay before the next attempt after the given number of
// failed attempts: min, 2·min, 4·min … capped at max, with ±10% jitter so
// envelopes deferred together do not retry in lock step. RFC 5321
// §4.5.4.1 asks for at least 30 minutes between retries to one
// destination in general; operators tune min (default 5m, like Postfix's
// minimal_backoff_time) and max (default 4h) in the config.
func backoff(attempts int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < attempts && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	jitter := time.Duration((rand.Float64()*0.2 - 0.1) * float64(d))
	return d + jitter
}
