// Package moderation runs the posts the list store holds: it stands
// beside the pipeline, between the list store and the queue, as a
// second source of mail next to ingress. The expander decides, at the
// end of DATA, which posts wait in the store (held for a moderator, or
// accepted while a DMARC lookup failed); the Runner then, in the server,
//
//   - notifies each moderator of a newly held post (a notice with the
//     post attached, its Reply-To the moderator's LIST-approve+TOKEN
//     address, naming LIST-reject+TOKEN),
//   - distributes accepted posts (approved by a moderator, from the CLI
//     of any process or by mail; or waiting for DMARC) through the
//     expander exactly as if they had just arrived, each exactly once:
//     it claims the post in a store transaction, queues the message and
//     deletes the post; a DMARC lookup that fails again leaves it for a
//     later try,
//   - tells the poster of a rejected post, once, never the null sender,
//   - and deletes posts (and tokens) whose time ran out.
//
// It watches the store's version (every commit of any process changes
// it) a few times a second and looks again at least every RescanEvery,
// for retries and expiry. At start it settles claims a crash left: a
// claim whose message reached the queue is finished, any other is given
// up and done again. While it runs it writes the node's heartbeat to the
// store, and records the node's start and clean stop (heartbeat.go), so
// that fanmail mod release never gives up a running node's claims.
package moderation
