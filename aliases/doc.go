// Package aliases reads sendmail aliases(5) files and expands addresses
// through them. It sits inside the expander stage of the pipeline: ingress
// asks whether a recipient expands, and the expander turns it into final
// targets (remote addresses, |programs, /files) with the envelope sender
// each one gets. The package owns the file format, the Table built from
// one or more files, and the expansion rules; it does no delivery
// (delivery/local runs programs and appends to files) and does not import
// the lists store (it reaches lists through the ListSource interface).
//
// Semantics follow sendmail 8.x, checked against `sendmail -bv`:
//
//   - Names are local parts, compared case-insensitively. name@D, with D
//     one of the local domains, is looked up as name.
//   - A name defined twice: a warning, and the last definition wins
//     (sendmail's map.c). With LoadOptions.Merge the values are joined
//     instead, like sendmail's -A map flag.
//   - Expansion is depth-first; a target already produced is dropped
//     (duplicate suppressed), so nobody gets a message twice.
//   - A name met again inside its own expansion (list: list, x@y, or a
//     longer cycle a: b, b: a) is delivered to the local mailbox of that
//     name instead of being expanded again (sendmail's QSELFREF).
//   - More than MaxDepth (10, sendmail's MaxAliasRecursion) nested
//     aliases fail that branch with "aliasing/forwarding loop broken".
//   - After expanding NAME, owner-NAME (owner-owner for names starting
//     with "owner-") is looked up; when its value is a single address it
//     becomes the envelope sender of NAME's targets, otherwise the
//     sender is owner-NAME itself.
//     The conventional owner-x: x-request, x-request: maintainer makes
//     x-request@PRIMARY the sender; NAME-request is an ordinary alias.
//   - A local name is looked up in the Table first, then in the
//     ListSource (so an alias can override or wrap a list); a list's
//     members are expanded in turn and get owner-LIST as sender.
//   - A local name with no alias and no list, and \name, become
//     name@PRIMARY, the first local domain.
//   - |program and /file targets are honoured only from the aliases files
//     of the Table, not from :include: files (unless AllowIncludeExec),
//     and never when the file naming them is group- or world-writable.
//   - A missing or unreadable :include: file is an error for that branch;
//     every other target is still produced. Include files are read at
//     expansion time, relative paths against the naming file's directory.
//   - Mail to :include:, |program or /file given directly (not reached
//     through an aliases file) is refused, as sendmail does.
package aliases
