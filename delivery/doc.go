// Package delivery is the last stage of the pipeline: it turns an
// envelope.Request (one envelope and its message) into SMTP transactions
// with the destination domain's MX and reports one envelope.Result per
// recipient. It owns the outbound connection cache, per-destination
// limits and the SMTP client, and resolves MX hosts through package
// resolver (one cache for the process, shared with the DMARC check);
// it knows nothing of the queue, which knows it only through those two
// types.
//
// One Deliver call:
//
//  1. Routes: a domain with a static route goes to that host:port, no DNS.
//  2. MX lookup through the resolver (package resolver: cached, TTLs honoured, negative
//     answers cached per RFC 2308, concurrent lookups collapsed into one,
//     TCP retry on truncation, a timeout per query): null MX (RFC 7505)
//     and NXDOMAIN fail every recipient at once, other DNS trouble defers
//     them; no MX means the domain itself (implicit MX). Nothing else is
//     looked up (nocanonify). Queries leave from random ports of rotating
//     sockets with random IDs, answers must match ID, question and server
//     address, and glue is taken only in the answer's bailiwick.
//  3. The MX group: domains whose MX host sets are equal share one budget
//     (one provider hosts many domains). Its limits come from Config,
//     overridden by the first Destination whose pattern matches the domain
//     or one of its MX hosts.
//  4. A connection: an idle cached one of the group if there is one (it
//     gets RSET before its next transaction), else a slot to dial a new
//     one, MX hosts in preference order, each resolved to A records only
//     when reached. A refused connection, or a greeting or EHLO that is not
//     2xx, moves on to the next address (at most five). STARTTLS follows
//     the TLS mode (opportunistic, required or none), resuming TLS
//     sessions with hosts seen before. DNS lookups are bounded in flight
//     (maxLookups) and one that times out is asked once more.
//  5. Transactions of at most RcptsPerTxn recipients, on the same
//     connection while it lasts. With PIPELINING (RFC 2920) MAIL FROM,
//     every RCPT TO and DATA go in one write and the replies are read in
//     order; without it, lock-step. SIZE, 8BITMIME and SMTPUTF8 are
//     honoured: a message the server cannot take is failed with 5.3.4,
//     5.6.3 or 5.6.7, never converted. An envelope of a list that
//     personalizes (envelope.Personal) is one transaction per member,
//     with the sender and header fields Config.Personalizer makes for
//     that member just before it (personal.go).
//  6. The connection goes back to the cache unless it broke, reached
//     TxnsPerConn or ConnMaxAge, or the group's window shrank; idle ones
//     close after ConnIdleTimeout (or as long as their greeting took),
//     and ConnCacheSize caps them all. Cached connections belong to the
//     MX group, not to one host name: any of them reaches an MX of every
//     domain in the group, and keeping them in the group's budget is what
//     lets MaxConns hold as measured at the server (idle connections
//     count). A closed connection keeps its slot until the server has
//     closed its side, since the server counts the session until then.
//
// Replies are read within 4096 octets per line and 100 lines per reply
// (maxReplyLine, maxReplyLines); a server going past either is a broken
// dialogue: connection closed, recipients deferred with 4.5.0, next MX.
//
// Status follows the reply class: 2xx Delivered, 4xx Deferred, 5xx Failed;
// anything that is not a definite answer is Deferred. A body is only sent
// after its 354 has been read, so a read error can never send a message
// twice.
//
// Scheduling per MX group (pool.go) follows Postfix's queue manager and
// adds what a realistic internet needs, where most time is spent waiting
// on slow, throttling, greylisting or dead receivers:
//
//   - The window of concurrent connections is one (a probe) until a
//     connect succeeds, then starts at InitialConcurrency, grows by one
//     per successful delivery until the first failure (slow start) and by
//     one per window's worth after, up to MaxConns, shrinks by one per
//     failed session, and after DeadAfter failures at a window of one the
//     group is suspended for DeadSuspend. ReplyRules map replies to
//     actions (halve the window, suspend the group); the defaults halve on
//     a 421 and suspend on the big providers' rate-limit replies.
//   - Slots tells the queue how many deliveries to a destination are worth
//     having in progress at once: one while it is new, suspended or has
//     not greeted us, its window once it has, twice the window once a
//     transaction went through; SlotsChanged signals when they grow. The
//     queue sets the rest aside, so a dead host or a tarpit holds one of
//     its runners.
//   - A connect to a group not reached before times out after
//     ConnectTimeoutMin, or four times the slowest recent connect; a
//     connect or greeting that times out (errNoAnswer) suspends the group
//     at once, doubling per suspension, and wakes whoever waits for it.
//     Once a group's greeting took over slowGreeting (10 s, a tarpit's),
//     a delivery waits that long for one of our connections to come free
//     before dialling another.
//   - Limits are learned from what throttling receivers say: a 421 at the
//     greeting while others of our sessions were open sets the group's
//     cap on sessions to the number the server had greeted; a 421 to a
//     later transaction on a connection sets its transactions per
//     connection; a 452 4.5.3 after accepted recipients sets recipients
//     per transaction. Those recipients are tried again at once on
//     another connection (a 421 leaves the transaction undecided, a 452
//     sends the rest in the next transaction), not deferred.
//   - A 421 that teaches no limit pauses the group's new connections
//     (ThrottlePause, doubling to ThrottlePauseMax) and the delivery tries
//     again after it, at most maxFruitless times, then defers with a
//     RetryAfter of seconds.
//   - Greylisting (greylist.go) gets its own schedule: a stated wait, the
//     window the group has shown, or GreylistRetry doubling up to
//     GreylistRetryMax, counted from the recipient's first greylisting,
//     as each greylisted recipient's RetryAfter.
//
// A busy destination does not park runners: when the group has no free
// slot, Deliver waits at most SlotWait (context-aware) and then defers the
// recipients with 4.4.5 and Result.RetryAfter set to a few seconds; a
// suspended group defers at once with 4.4.1 and RetryAfter set to the
// time left. The queue honours RetryAfter instead of its normal backoff
// for those recipients; with no reply code it counts as no attempt.
//
// A queue group may send from a pool of local addresses, each with its
// own HELO name, taken in turn per connection within a limit per address
// and MX group (sources.go). What the MX hosts defer may go to a
// fallback relay: in every attempt (sendmail's FallbackMXhost), or, on a
// first-attempt node, everything its first attempt left and every later
// attempt whole (fallback.go).
package delivery
