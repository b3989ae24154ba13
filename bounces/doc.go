// Package bounces turns bounce messages and delivery failures into
// evidence about list members — which member, hard or soft, the
// diagnostic — and keeps the decaying score that says when a member's
// delivery should be disabled and when the member should be removed.
//
// It stands beside the pipeline, at its far end: mail to a list's bounce
// address (LIST-bounces@ or, with VERP, LIST-bounces+LOCAL=DOMAIN@)
// comes back through ingress and is handed to Examine; a synchronous 5xx
// from a remote MX is turned into the same evidence by FromReply in
// delivery. The caller then feeds each member's evidence to
// Policy.Record with the member's State from the list store, runs
// Policy.Tick for disabled members, and acts on the decisions. This
// package owns the reading of bounces (Parse), the VERP address form
// (EncodeVERP, ParseBounceAddress), the hard/soft table (Classify) and
// the scoring rules (Policy); it owns no storage, sends no mail and
// reads no clock: times are passed in.
//
// Parse reads RFC 3464 reports (multipart/report with
// message/delivery-status, and RFC 6533's message/global-delivery-status)
// and the text notices of Postfix, Exim, sendmail, qmail, Gmail and
// Exchange/Microsoft 365; it tells auto-replies and challenge-response
// messages apart from bounces. Everything it reads is bounded: at most
// 1 MiB of a message, 64 MIME parts, 8 levels of nesting, 500
// recipients, and short diagnostics and evidence excerpts. It never
// fails on malformed input; garbage yields an empty report.
package bounces
