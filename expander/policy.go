package expander

import (
	"context"
	"fmt"

	"fanmail/listaddr"
	"fanmail/lists"
)

// Who may post. The decision is made per list at the end of DATA, before
// the reply, since a reject is the reply (550 5.7.1); a hold or discard
// is a 250, the post being safe in the store (hold) or not wanted.

// verdict is what becomes of a post on one list.
type verdict int

const (
	distribute verdict = iota
	hold
	reject
	discard
)

func (v verdict) String() string {
	return [...]string{"distribute", "hold", "reject", "discard"}[v]
}

// decision is a verdict with the reason a moderator (hold) or the
// poster (reject) is given.
type decision struct {
	verdict verdict
	reason  string
}

// poster is who a post comes from, as the policy sees it: the envelope
// sender and the From: address, either of which counts (Mailman's rule).
type poster struct {
	sender, from string
}

// PolicyError is a post a list refuses (nonmember_action = reject): the
// reply to DATA is 550 5.7.1 with Reason, which says what to do.
type PolicyError struct {
	List   string
	Reason string
}

func (e *PolicyError) Error() string { return e.List + ": " + e.Reason }

// decide applies list's posting policy to a post from p. Announce and
// members lists differ only in who may post, what a moderator is told
// of a post from anyone else, and where its poster is sent instead.
func (x *Expander) decide(ctx context.Context, list string, s lists.Settings, p poster) (decision, error) {
	var (
		may          func(ctx context.Context, list, addr string) (bool, error)
		holdReason   string
		rejectFormat string // of the list and the address to write to instead
		instead      listaddr.Role
	)
	switch s.Posting {
	case lists.PostingOpen:
		return decision{verdict: distribute}, nil
	case lists.PostingModerated:
		return decision{verdict: hold, reason: "the list is moderated: every post waits for a moderator"}, nil
	case lists.PostingAnnounce:
		may, instead = x.store.IsModerator, listaddr.Owner
		holdReason = "the sender is not a moderator, and only moderators post to this announce list"
		rejectFormat = "Only the moderators of %s may post to it; write to %s to reach its owner"
	default: // members
		may, instead = x.store.IsMember, listaddr.Request
		holdReason = "the sender is not a member"
		rejectFormat = "Only members of %s may post to it; post from your member address, or subscribe by writing to %s"
	}
	ok, err := x.anyOf(ctx, may, list, p)
	if err != nil || ok {
		return decision{verdict: distribute}, err
	}
	return nonmember(s, holdReason, fmt.Sprintf(rejectFormat, list, listaddr.Of(list, instead, ""))), nil
}

// nonmember is the verdict of nonmember_action for a post from someone
// who may not post.
func nonmember(s lists.Settings, holdReason, rejectReason string) decision {
	switch s.NonmemberAction {
	case lists.ActionReject:
		return decision{verdict: reject, reason: rejectReason}
	case lists.ActionDiscard:
		return decision{verdict: discard, reason: holdReason}
	}
	return decision{verdict: hold, reason: holdReason}
}

// anyOf reports whether the envelope sender or the From: address passes
// is (IsMember or IsModerator).
func (x *Expander) anyOf(ctx context.Context, is func(ctx context.Context, list, addr string) (bool, error), list string, p poster) (bool, error) {
	for _, a := range []string{p.sender, p.from} {
		if a == "" {
			continue
		}
		ok, err := is(ctx, list, a)
		if err != nil {
			return false, fmt.Errorf("posting policy of %s: %w", list, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}
