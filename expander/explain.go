package expander

import (
	"fmt"
	"io"
	"strings"

	"fanmail/aliases"
)

// senderTargets are the final targets of an alias expansion that share
// an envelope sender: the owner-NAME of the alias that reached them, or
// the aliases' bounce address.
type senderTargets struct {
	sender string
	addrs  []string // addresses, delivered over SMTP
	local  []string // |program and /file targets, delivered locally
}

// bySender groups targets by envelope sender, in the order the senders
// first appear; a target without one gets fallback.
func bySender(targets []aliases.Final, fallback string) []*senderTargets {
	var groups []*senderTargets
	index := map[string]*senderTargets{}
	for _, t := range targets {
		sender := t.Sender
		if sender == "" {
			sender = fallback
		}
		g := index[sender]
		if g == nil {
			g = &senderTargets{sender: sender}
			index[sender] = g
			groups = append(groups, g)
		}
		if t.Kind == aliases.Address {
			g.addrs = append(g.addrs, t.Value)
		} else {
			g.local = append(g.local, t.String())
		}
	}
	return groups
}

// Explain writes how an alias expansion turns into envelopes, for
// `fanmail aliases expand --explain`: the expansion tree, then the local
// deliveries, then per envelope sender (as Expand groups them) the
// envelopes router cuts: per domain, in the domain's queue group, at most
// that group's r= each. Targets no owner-NAME covers go out from bounce,
// the aliases' bounce address (a post with the null sender keeps it).
func Explain(w io.Writer, res aliases.Result, router *Router, bounce string) {
	fmt.Fprintln(w, "\nexpansion:")
	for _, n := range res.Tree {
		printNode(w, n, 1)
	}
	fmt.Fprintln(w, "\nenvelopes:")
	for _, t := range res.Targets {
		if t.Kind != aliases.Address {
			s := t.Sender
			if s == "" {
				s = bounce
			}
			fmt.Fprintf(w, "  local delivery %s, sender %s\n", t, s)
		}
	}
	for _, g := range bySender(res.Targets, bounce) {
		n := map[string]int{} // envelopes so far per domain
		for _, env := range router.Split(g.sender, g.addrs) {
			n[env.Domain]++
			group, r := router.Route(env.Domain)
			fmt.Fprintf(w, "  sender %s, queue group %s (r=%d), domain %s, envelope %d: %s\n",
				g.sender, group, r, env.Domain, n[env.Domain], summarize(env.Recipients))
		}
	}
}

// printNode prints one branch; an alias whose owner-NAME changes the
// envelope sender says so on its line.
func printNode(w io.Writer, n *aliases.Node, depth int) {
	line := strings.Repeat("  ", depth) + n.Label
	if n.Note != "" {
		line += "  (" + n.Note + ")"
	}
	if len(n.Children) > 0 && n.Children[0].Sender != n.Sender {
		line += "  [envelope sender " + n.Children[0].Sender + "]"
	}
	fmt.Fprintln(w, line)
	for _, c := range n.Children {
		printNode(w, c, depth+1)
	}
}

// summarize lists a few recipients of an envelope and counts the rest.
func summarize(rcpts []string) string {
	const show = 5
	switch {
	case len(rcpts) == 1:
		return "1 recipient: " + rcpts[0]
	case len(rcpts) <= show:
		return fmt.Sprintf("%d recipients: %s", len(rcpts), strings.Join(rcpts, ", "))
	}
	return fmt.Sprintf("%d recipients: %s, ..., %s", len(rcpts), strings.Join(rcpts[:show-1], ", "), rcpts[len(rcpts)-1])
}
