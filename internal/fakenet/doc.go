// Package fakenet provides real network servers on loopback for tests and
// the load tool: an SMTP sink (go-smtp) that records what it receives, and
// a DNS server (miekg/dns) whose zone a test sets and changes at run time.
//
// They are real servers speaking the real protocols over real sockets, so
// the code under test runs exactly as it would against the Internet, only
// on 127.0.0.0/8. Nothing here touches any other address.
package fakenet
