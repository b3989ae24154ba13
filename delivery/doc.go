// Package delivery is the last stage of the pipeline: it turns an
// Envelope into an SMTP transaction with the destination domain's MX and
// reports one Result per recipient. It owns MX resolution (with a shared
// cache) and the outbound SMTP dialogue; it knows nothing of the queue.
package delivery
