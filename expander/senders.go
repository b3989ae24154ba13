package expander

import "strings"

// The envelope senders of mail fanmail sends on: never the poster's
// address, which anyone can forge, so that a failed delivery never
// bounces to a third party with their name on the post (backscatter).

// MailerDaemon is the default envelope sender of mail forwarded through
// an alias that has no owner-NAME: sendmail's and Postfix's name for the
// mail system itself, to which nothing is ever bounced.
func MailerDaemon(hostname string) string { return "MAILER-DAEMON@" + hostname }

// forwardSender is the envelope sender for mail forwarded on behalf of
// own (a list's bounce address, or the aliases' one): own, except that
// mail with the null sender, a DSN, keeps it and so can cause no other.
func forwardSender(poster, own string) string {
	if strings.Trim(poster, "<> ") == "" {
		return ""
	}
	return own
}

// aliasBounce is the envelope sender of mail forwarded through an alias
// that has no owner-NAME: [aliases] bounce_address, by default
// MailerDaemon of the hostname.
func (x *Expander) aliasBounce() string {
	if x.aliases != nil && x.aliases.cfg.BounceAddress != "" {
		return x.aliases.cfg.BounceAddress
	}
	return MailerDaemon(x.hostname)
}
