// Package dkim signs the mail fanmail sends (DKIM, RFC 6376). It stands
// beside the pipeline rather than in it: the expander (package render)
// hashes each list copy's body once, before the spool, and signs the
// copy's header; copies that will differ per member (per-member header
// fields) can be signed at delivery time with that same body hash. It
// owns the signing keys on disk, their DNS records, and the two halves
// of a signature:
//
//  1. The body hash (bh=): relaxed body canonicalization (§3.4.4) and
//     SHA-256, streamed through a BodyHasher with a fixed-size buffer, so
//     a body of any size is read once and never held in memory. A post's
//     body is the same in every copy, so it is hashed once per post, not
//     once per member; BodyHash is 32 bytes to store with the envelope.
//  2. The header signature (b=): Signer.Sign takes a header block and the
//     body hash and returns the DKIM-Signature field to prepend:
//     a=rsa-sha256 or ed25519-sha256 (RFC 8463), c=relaxed/relaxed, t= the
//     signing time, h= the fields a reader sees and a list adds (From,
//     To, Cc, Subject, Date, Message-ID, Reply-To, List-Id, List-Post,
//     List-Help, List-Subscribe, List-Unsubscribe, List-Unsubscribe-Post,
//     List-Archive, MIME-Version, Content-Type) that are present, each as
//     often as it occurs, and From once more than it occurs. A domain
//     with both an RSA and an Ed25519 key is signed with both (a message
//     may carry several signatures, RFC 6376 §4): receivers that do not
//     know Ed25519 skip that one and still find the RSA one.
//
// Keys live under the data directory as DIR/dkim/DOMAIN/SELECTOR.key,
// one PEM private key per file (PKCS#8 as written by `fanmail dkim
// keygen`; OpenDKIM's PKCS#1 RSA keys are read too), mode 0600 in
// directories of mode 0700. LoadKeyring reads them all at startup and
// refuses a key it cannot use, naming the file and the fix. When a domain
// has several keys of one algorithm (a rotation), the most recently
// written one signs: `fanmail dkim keygen` writes the new key, its TXT
// record is published, and the next start signs with it; the old record
// stays in the DNS for a week so copies already sent still verify.
//
// Which domain signs: Keyring.Pick tries the From: domain first, then the
// envelope sender's, and signs with the first that has a key. A signature
// whose d= matches the From: domain is the one DMARC counts (RFC 7489
// §3.1.1); for a post relayed unchanged from an outside author fanmail
// holds no key for the author's domain, so the list's own domain (the
// envelope sender, owner-LIST@DOMAIN) signs instead, which receivers use
// for the list's reputation. Domains match exactly (A-labels,
// case-insensitive): a key for example.org does not sign for
// lists.example.org.
//
// go-msgauth's signer hashes the body of every message it signs, which
// is what the expander and delivery must not do per copy, so the header
// hash and the signature are computed here; go-msgauth's verifier and
// dkimpy check every signature this package makes (see the tests).
package dkim
