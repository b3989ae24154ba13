// Package fakenet provides real network servers on loopback for tests and
// the load tool: an SMTP sink (go-smtp) that records what it receives, and
// a DNS server (miekg/dns) whose zone a test sets and changes at run time.
//
// A sink can also behave like the receivers of the real Internet: a WAN
// round trip per exchange, a tarpit's held greeting or slow replies, a
// provider's caps on concurrent connections per client address and on
// messages per connection (421 4.7.0), a recipient limit per transaction
// (452 4.5.3) and greylisting (451 4.7.1). A BlackHole is an address whose
// TCP handshake never completes, so a connect hangs until its timeout.
//
// They are real servers speaking the real protocols over real sockets, so
// the code under test runs exactly as it would against the Internet, only
// on 127.0.0.0/8. Nothing here touches any other address.
package fakenet
