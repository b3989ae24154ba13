// Package queuegroups is the third stage of the pipeline: it owns the disk.
// It takes messages whose envelopes the expander has already routed to
// queue groups, stores each message once per queue directory, records
// every recipient's state durably in an append-only journal with group
// commit (many messages share one fsync), recovers that state after a
// crash, and runs persistent runners that hand due envelopes to delivery,
// each destination only as many at once as it can use, and record what
// happened to each recipient.
//
// The package is built in four layers, each using only those below it:
//
//  1. Journal and records (journal.go, record.go, replay.go, body.go):
//     segment files, framed and checksummed records, the writer goroutine
//     with group commit that streams big bodies in chunks, replay that
//     resynchronises past unreadable bytes and quarantines them, and the
//     spool body ingress receives a post into.
//  2. Directory (state.go, codec.go, dir.go, scan.go, relocate.go,
//     view.go): one queue directory, the compact state of the messages
//     whose records live in its journal, replay, reading a message's
//     records back, relocation, and the collection of segments no
//     pending message needs.
//  3. Group (group.go, attempt.go, schedule.go, backoff.go): one queue
//     group's directories, its schedule (messages with due envelopes,
//     each with a cursor over its fresh ones, biggest domain first;
//     deferred envelopes;
//     queue-only messages), the admission of deliveries per destination
//     (as many as the deliverer's Slots say each can use; the rest set
//     aside until one ends), one delivery attempt and its outcome (the
//     backoff, or the RetryAfter delivery gives throttled, greylisted,
//     busy and suspended recipients), and the retry timer.
//  4. Queue (queue.go, enqueue.go, message.go, bounce.go, inspect.go,
//     config.go, id.go, children.go): the spool as callers see it: Open
//     and recovery, Enqueue streaming a message's envelopes into its
//     groups, each group's dispatcher starting a delivery goroutine per
//     admitted envelope within its runners and the MaxQueueChildren cap
//     (by default from the open-file limit and the cores), DSNs as each pass over a
//     share ends (with a record of whom they reported), and the
//     operator's view (Stats, Summary, Show, Flush, Delete), which
//     package control serves over a socket.
//
// On-disk layout of one queue directory:
//
//	NNNNNNNNNNNNNNNN.journal             append-only segments, replayed in order
//	NNNNNNNNNNNNNNNN.journal.OFF.quarantine  bytes replay could not read
//	lock                                 flock held by the server
//
// A segment starts with a header record (the format version) and holds
// framed records (magic, length and its checksum, CRC-32C, type). A
// message share is a head record (its ID, arrival, a flags byte, whose
// bits are the delay warning sent, moved aside and SMTPUTF8, and of
// which a reader takes only the bits it knows; its parts, with their
// layouts when a part replaces the body's header or puts bytes in, and
// after those the per-member template of each part when one
// personalizes, then the body), a record per envelope, parts declared
// late, and a commit record, which alone makes it deliverable; then
// status records (an attempt started, each transaction's settled
// recipients with their replies, the outcome, or a panic), the
// recipients each DSN reported, and delete, warned and moved-aside
// marks. A segment is deleted once no pending message has its head in it
// or before it; long-lived messages are copied to the head so they never
// pin old segments.
package queuegroups
