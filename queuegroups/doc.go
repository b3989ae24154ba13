// Package queuegroups is the third stage of the pipeline: it owns the disk.
// It stores each accepted message once per queue directory, records every
// recipient's state durably in an append-only journal with group commit
// (many messages share one fsync), recovers that state after a crash, and
// runs persistent runners that hand due envelopes to delivery and record
// what happened to each recipient.
//
// On-disk layout of one queue directory:
//
//	NNNNNNNNNNNNNNNN.journal   append-only segments, replayed in order
//
// A segment holds framed records: a message record (the body, the
// envelopes and every recipient's state) and status records (the outcome
// of one delivery attempt of one envelope). A segment is deleted once no
// message whose latest full record lives in it or before it is still
// pending; long-lived messages are re-written at the head so they never
// pin old segments.
package queuegroups
