// Package aliases reads sendmail aliases(5) files and expands addresses
// through them. It sits inside the expander stage of the pipeline: ingress
// asks whether a recipient expands, and the expander turns it into final
// targets (remote addresses, |programs, /files) with the envelope sender
// each one gets. The package owns the file format, the Table built from
// one or more files, and the expansion rules; it does no delivery
// (delivery/local runs programs and appends to files) and does not import
// the lists store (it reaches lists through the ListSource interface).
//
// Semantics follow sendmail 8.17 with Debian's sendmail.mc, checked
// against its `sendmail -bv` (testdata/aliases/README.md):
//
//   - Lines are joined as readaliases joins them: a line ending in a
//     backslash, or followed by one that starts with a blank, continues
//     on the next, comments included (parse.go says what follows).
//   - A value is an address as sendmail parses it: comments dropped, the
//     address inside the last <> taken. Where sendmail would silently
//     make something else of it (words joined by BlankSub, a # taken as
//     part of an address, a program with blanks outside quotes) the value
//     is refused with FILE:LINE; the rest of the file is still used.
//   - Names are local parts, lowercased; NAME@DOMAIN is NAME when DOMAIN
//     is in class w (ClassW: the local domains, the host name and
//     localhost). A name defined twice: a warning, and the last definition
//     wins (sendmail's map.c); with LoadOptions.Merge the values are
//     joined instead, like sendmail's -A map flag.
//   - user+detail is looked up as user+detail, then user+*, then user,
//     each fallback one alias level deeper, as sendmail's ruleset 5 does.
//   - A local name that is no alias and no list is a local mailbox,
//     printed bare with its +detail (sendmail's local mailer user). A name
//     the files define, or tried to define, is not a mailbox: \name for an
//     alias, list: list, and a name whose entry was refused are errors
//     ("user unknown"), as for a name sendmail finds in no passwd file.
//   - Expansion is depth-first; a target already produced is dropped
//     (duplicate suppressed), so nobody gets a message twice. A name met
//     again inside its own expansion (a: b, b: a, or through an
//     :include:) is dropped too; an address that expands to nothing when
//     nothing at all is deliverable is reported "aliasing/forwarding loop
//     broken", as sendmail's testselfdestruct does (an :include: of an
//     empty file too).
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
//   - |program and /file targets are honoured only from the aliases files
//     of the Table, not from :include: files (unless AllowIncludeExec),
//     and never when the file naming them is group- or world-writable.
//   - A missing or unreadable :include: file is an error for that branch;
//     every other target is still produced. Include files are read at
//     expansion time, relative paths against the naming file's directory.
//   - Mail to :include:, |program or /file given directly (not reached
//     through an aliases file) is refused, as sendmail does.
//
// Deliberate differences: CRLF files are read as LF files; an entry
// longer than sendmail's 8 KiB line buffer is read, not refused; a value
// in UTF-8 is kept as written, where sendmail strips the 8th bit.
package aliases
