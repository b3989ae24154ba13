// Package unsubscribe mints and verifies the tokens of RFC 8058 one-click
// unsubscribe links, https://BASE/u/TOKEN. It is a leaf package beside
// the pipeline: delivery mints a token per member when it renders that
// member's List-Unsubscribe header, and the web package verifies the
// token a mail provider POSTs back, before it removes the member through
// the list store. It owns the signing keys and the token format, nothing
// else: which members exist is the list store's business.
//
// # Token
//
// A token is self-contained, so verifying it needs no database:
//
//	payload = 0x01 (format) | uvarint(key id) | len(list) (1 octet) | list | member
//	token   = base64url(payload | HMAC-SHA256(key, "fanmail unsubscribe\x00" | payload)[:16])
//
// without padding. The list and member addresses go in as the octets
// given (the store's normal form, UTF-8 for internationalized
// addresses); base64url keeps the URL ASCII whatever they are. The MAC,
// truncated to 128 bits, covers the format, the key id and both
// addresses, and the list's length is part of it, so no token can be
// re-cut into another (list, member) pair: a token names exactly one
// member of exactly one list, and forging one means forging the MAC.
//
// Length: 19 octets plus the two addresses, times 4/3. For
// announce@example.org and alice@example.com that is 75 characters; at
// the longest (two 254-octet addresses) it is MaxTokenLen, 706. A header
// line may be 998 characters (RFC 5322 §2.1.1) and this URL cannot be
// folded, so base URLs are capped at MaxBaseURLLen: with the longest
// token, "List-Unsubscribe: <BASE/u/TOKEN>" still fits. The 78-character
// line RFC 5322 recommends is a SHOULD that a token with two addresses
// cannot meet; the header folds before the "<".
//
// A token is signed, not encrypted: the addresses can be read from it by
// whoever holds the link, which is the member's own mail and the server's
// operator.
//
// # Subscription epochs
//
// A token is not bound to one subscription. RFC 8058 §3.1 wants the URI
// to keep working, and a member who unsubscribes through the link of an
// old message after subscribing again is removed again: the member asked
// to leave that list, which is also what Gmail and Yahoo expect of the
// link. Binding tokens to a subscription epoch would need the epoch in
// the store and in every envelope, and would turn an explicit
// "unsubscribe me" into a no-op. Only key retirement ends a token.
//
// # Keys
//
// The keys live in a directory of the data directory, one file per key,
// N.key for key id N (1 to MaxKeyID), each exactly 32 random octets and
// mode 0600. Open creates 1.key on first use. The key with the highest id
// mints; every key present verifies. To rotate, add the next N.key and
// restart; to retire a key, and with it every link it signed, delete its
// file and restart.
package unsubscribe
