// Package listmail answers mail to a list's command addresses.
//
// It stands beside the pipeline, at the hand-off from the queue to
// delivery, as a second source of mail next to ingress (as package
// moderation does): the expander queues mail for a list's own
// addresses (package listaddr: LIST-request, -subscribe, -unsubscribe,
// -confirm+TOKEN, -bounces and its VERP forms, and what reaches the
// owner from the null sender) as one envelope to that address in the
// control group, and Deliverer, wrapped around the delivery agent,
// delivers it here instead of over SMTP. Mail fanmail generates for
// those addresses itself (a DSN to a list's bounce address) takes the
// same way, so none of it is ever looked up in the DNS, and a list
// domain needs no MX.
//
//   - Commands (commands.go): subscribe, unsubscribe and help, in the
//     subject or first body line of mail to LIST-request, or any mail to
//     LIST-subscribe and LIST-unsubscribe. A change of membership waits
//     for the address's own confirmation (double opt-in: a mail whose
//     Reply-To is LIST-confirm+TOKEN; any reply to it completes the
//     change) and, with subscribe_policy = moderate, then for a
//     moderator's. Answers go to the requesting address, at most
//     max_autoresponses_per_day a day, and never to the null sender or
//     an automatic message (RFC 3834).
//   - Bounces (bounces.go): mail to LIST-bounces is read with package
//     bounces, and every failure that names a member is recorded with
//     its evidence and scored; a member past bounce_score_threshold is
//     disabled (no more copies), warned (a reply to a warning enables
//     delivery again), and removed after the last warning; the owner
//     is told. A bounce that names no member goes to
//     the owner. Deliverer also records the 5xx replies delivery gets
//     for a list's mail (its envelope sender is the list's bounce
//     address), which are bounces no report will bring.
//   - Runner (runner.go): the warnings and removals that come due with
//     time, the welcomes of subscriptions approved on the server (the
//     store records the approval; a server sends the welcome once), and
//     the expiry of requests and of the answer counts.
//
// Whatever it sends it composes itself and queues in the control group
// from the list's bounce address; mail for an owner is forwarded
// through the expander (ForwardToOwner), as if it had arrived.
package listmail
