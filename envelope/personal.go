package envelope

// Personalize says how the members of a list get their copies of a post.
// With PersonalizeOff an envelope is one SMTP transaction for up to r
// recipients, all sent the same bytes; otherwise the envelope is still
// stored and scheduled as one (up to r members of one domain), but
// delivery sends each member its own transaction, over the same
// connections, with the sender and header fields a Personalizer makes
// for that member at delivery time.
type Personalize byte

const (
	PersonalizeOff  Personalize = iota // one transaction per envelope, the same copy for all
	PersonalizeVERP                    // per member: LIST-bounces+LOCAL=DOMAIN@LISTDOMAIN
	PersonalizeFull                    // VERP, and a one-click List-Unsubscribe under a per-member DKIM signature
)

var personalizeNames = [...]string{PersonalizeOff: "off", PersonalizeVERP: "verp", PersonalizeFull: "full"}

func (p Personalize) String() string { return enumName(personalizeNames[:], p, "personalize") }

// Personal is what a list part stores for its members' copies: the mode,
// and a template that only the Personalizer reads (package render writes
// it: the list, the body hash and the header a per-member signature
// covers). The queue keeps it once per part, never per member.
type Personal struct {
	Mode     Personalize
	Template []byte
}

// MemberCopy is one member's share of a personalized copy: the MAIL FROM
// of its transaction and the header fields put in front of the stored
// copy (ending in CRLF; empty for none).
type MemberCopy struct {
	Sender string
	Header []byte
}

// A Personalizer makes one member's copy of a personalized envelope:
// sender is the envelope's own (the list's bounce address), rcpt the
// member. It is called once per member transaction, from many delivery
// goroutines at once.
type Personalizer interface {
	Member(p Personal, sender, rcpt string) (MemberCopy, error)
}
