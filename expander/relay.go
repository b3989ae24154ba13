package expander

import (
	"bytes"
	"context"
	"strings"

	"fanmail/queuegroups"
)

// Serves reports whether fanmail takes mail for domain itself: its
// hostname, a local domain of the aliases files, or a domain with lists
// (Roles.ListDomains). Mail for any other domain is relaying, which
// ingress allows its relay peers only.
func (x *Expander) Serves(ctx context.Context, domain string) (bool, error) {
	domain = strings.ToLower(domain)
	if domain == "" || strings.EqualFold(domain, x.hostname) {
		return true, nil
	}
	if x.aliases != nil {
		for _, d := range x.aliases.cfg.LocalDomains {
			if strings.EqualFold(d, domain) {
				return true, nil
			}
		}
	}
	return x.isListDomain(ctx, domain)
}

// relayPart is the part of a post that a relay peer sent for
// recipients elsewhere (Post.Relay), as a fallback host takes the mail
// its first-attempt nodes could not deliver: the message as it came with
// this hop's Received header, from the sender as it came, so bounces go
// where the peer's would have gone.
func (x *Expander) relayPart(p Post) queuegroups.Part {
	var b bytes.Buffer
	rcpt := ""
	if len(p.Relay) == 1 {
		rcpt = p.Relay[0]
	}
	x.received(&b, p, rcpt)
	return queuegroups.Part{Prefix: b.Bytes(), Envelopes: x.router.Split(p.Sender, p.Relay)}
}
