// Package delivery is the last stage of the pipeline: it turns an
// Envelope into an SMTP transaction with the destination domain's MX and
// reports one Result per recipient. It owns MX resolution (with a shared
// cache) and the outbound SMTP dialogue; it knows nothing of the queue.
//
// One Deliver call:
//
//  1. Routes: a domain with a static route goes to that host:port, no DNS.
//  2. MX lookup through the Resolver (cached, TTLs honoured, concurrent
//     lookups collapsed): null MX (RFC 7505) and NXDOMAIN fail every
//     recipient, other DNS trouble defers them; no MX means the domain
//     itself (implicit MX).
//  3. MX hosts in preference order, each resolved to A records only when
//     reached: connect, greeting, EHLO. A refused connection, greeting or
//     EHLO moves on to the next address; if none is left, all recipients
//     are deferred with the last reason.
//  4. MAIL FROM (SIZE, BODY=8BITMIME when offered), RCPT per recipient
//     (each reply kept), DATA only if one was accepted; its reply decides
//     every accepted recipient. 421 or a lost connection defers whoever is
//     still undecided. QUIT.
//
// Status follows the reply class: 2xx Delivered, 4xx Deferred, 5xx Failed;
// anything that is not a definite answer is Deferred.
package delivery
