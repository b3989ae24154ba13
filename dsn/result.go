package dsn

import (
	"fmt"
	"time"

	"fanmail/delivery"
)

// FromResult turns one delivery.Result into the recipient fields of a
// DSN: Failed is "failed", Deferred "delayed" (retried until willRetry),
// Delivered "delivered". A result without an enhanced code gets the
// generic one for its class (RFC 3463 §3.1: X.0.0).
func FromResult(r delivery.Result, lastAttempt, willRetry time.Time) Recipient {
	rc := Recipient{
		FinalRecipient: r.Recipient,
		Status:         r.Enhanced,
		RemoteMTA:      r.Host,
		Code:           r.Code,
		Text:           r.Text,
		LastAttempt:    lastAttempt,
	}
	class := 4
	switch r.Status {
	case delivery.Failed:
		rc.Action, class = Failed, 5
	case delivery.Deferred:
		rc.Action, rc.WillRetryUntil = Delayed, willRetry
	case delivery.Delivered:
		rc.Action, class = Delivered, 2
	}
	if rc.Status == "" {
		rc.Status = fmt.Sprintf("%d.0.0", class)
	}
	return rc
}
