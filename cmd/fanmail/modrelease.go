package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"fanmail/lists"
	"fanmail/queuegroups"
)

// A node that takes a decided post claims it with the queue ID it is
// making (lists.Store.Claim), and settles its own claims when it starts
// again. A node that never starts again keeps them, and its posts wait
// for ever: mod release gives them up so that another node takes the
// posts.
//
// Every running server records its start, a heartbeat every
// lists.HeartbeatEvery and its clean stop in the store (package
// moderation), and mod release goes by it:
//
//   - a node that is running (not stopped cleanly, and heard from
//     within lists.GoneAfter) keeps its claims, --force or not: they
//     are its own to settle, at the latest at its next start;
//   - a node that stopped cleanly, or has been silent for longer, is
//     not running, but its spool may still hold the message of a claim
//     (queued just before it stopped, crashed or lost the store), and
//     releasing that claim sends the post twice: the operator checks
//     the spool and says so with --force;
//   - a node that never reported (a fanmail from before the heartbeat,
//     or a wrong name) is said to be so; its claims, if any, need
//     --force as above, after making sure it is stopped; a name with
//     neither a report nor a claim is an error listing the nodes that
//     did report.

func modReleaseCommand() *cli.Command {
	return &cli.Command{
		Name:      "release",
		Usage:     "show when a node was last seen and list its claims on held posts; if it is gone, give them up (with --force) so another node does them",
		ArgsUsage: "--node NAME [--force]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "node", Usage: "the [node] `NAME` of the node that is gone (the end of its queue IDs)"},
			&cli.BoolFlag{Name: "force", Usage: "release them: NAME is not running (a running node is refused all the same) and none of the queue IDs listed is in its spool"},
		},
		Action: modRelease,
	}
}

func modRelease(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("mod release: unexpected argument %q; give --node NAME", c.Args().First())
	}
	node := strings.TrimSpace(c.String("node"))
	if node == "" {
		return errors.New("mod release: give --node NAME, the [node] name of the node that is gone (the part of its queue IDs after the dot)")
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	if node == cfg.Node.Name {
		// This node's own claims are settled by its start, which looks
		// for each claim's message in its spool: nothing goes twice.
		return fmt.Errorf("mod release: %s is this node's own name ([node] name): start fanmail serve here instead; "+
			"at start it settles its own claims, finishing those whose message is in its spool", node)
	}
	return readStore(c, func(store *lists.Store) error {
		now := time.Now()
		seen, err := store.FindNode(c.Context, node)
		known := err == nil
		if err != nil && !errors.Is(err, lists.ErrNoNode) {
			return err
		}
		claimed, err := store.Posts(c.Context, lists.PostFilter{Claimed: true})
		if err != nil {
			return err
		}
		var mine []lists.Post
		for _, p := range claimed {
			if queuegroups.Node(p.Claim) == node {
				mine = append(mine, p)
			}
		}
		if !known {
			fmt.Fprintf(c.App.Writer, "node %s never reported to this list store\n", node)
			if len(mine) == 0 {
				return unknownNode(c, store, node)
			}
		} else {
			fmt.Fprintf(c.App.Writer, "node %s: %s\n", node, nodeLife(seen, now))
		}
		if len(mine) == 0 {
			fmt.Fprintf(c.App.ErrWriter, "node %s holds no claims on held posts\n", node)
			return nil
		}
		alive := known && seen.Alive(now)
		if c.Bool("force") && !alive {
			return releaseClaims(c, store, node, mine)
		}
		if err := claimTable(c, mine); err != nil {
			return err
		}
		switch {
		case alive:
			return fmt.Errorf("mod release: nothing released, --force or not: node %s is running (last heartbeat %s ago; "+
				"a node counts as gone %s after its last heartbeat, or at once when it stops cleanly). Its claims are its own: "+
				"it settles them itself, at the latest at its next start. If it hangs, stop it; once it is stopped, run this again",
				node, ago(seen.LastSeen, now), lists.GoneAfter)
		case known:
			return fmt.Errorf("mod release: nothing released. Node %s is not running, but its spool may still hold the message "+
				"of a claim above (queued just before it stopped or lost the list store): releasing that claim sends the post twice. "+
				"Make sure that %s", node, spoolCheck(node))
		}
		return fmt.Errorf("mod release: nothing released. Node %s never reported to this list store: it last ran a fanmail "+
			"from before nodes reported (or the name is wrong), so fanmail cannot tell whether it is running. Releasing the "+
			"claim of a node that still runs, or whose spool holds the queue ID, sends that post twice. Make sure %s is "+
			"stopped for good and that %s", node, node, spoolCheck(node))
	})
}

// spoolCheck is what an operator checks on node before --force, and
// the better way out when its spool survives.
func spoolCheck(node string) string {
	return fmt.Sprintf("none of the queue IDs above is in its spool (fanmail queue on that node; if its spool can be "+
		"moved to a replacement started with [node] name = %q, do that instead: it settles these claims itself), "+
		"then run again with --force", node)
}

// unknownNode is the error for a name that neither reported nor holds
// a claim: most likely a typo, so it names the nodes that did report.
func unknownNode(c *cli.Context, store *lists.Store, node string) error {
	nodes, err := store.Nodes(c.Context)
	if err != nil {
		return err
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	did := "none did"
	if len(names) > 0 {
		did = "nodes that did: " + strings.Join(names, ", ")
	}
	return fmt.Errorf("mod release: nothing to release: no node named %s ever reported to this list store (%s), "+
		"and no claim names it; check the name (the part of its queue IDs after the dot)", node, did)
}

// nodeLife says what the store knows of n's life at now.
func nodeLife(n lists.Node, now time.Time) string {
	seen := fmt.Sprintf("last seen %s (%s ago)", n.LastSeen.UTC().Format(time.RFC3339), ago(n.LastSeen, now))
	switch {
	case n.Stopped:
		return seen + ", stopped cleanly"
	case n.Alive(now):
		return seen + ", running"
	}
	return fmt.Sprintf("%s, gone: no heartbeat for over %s, and it did not stop cleanly (crashed, killed, or cut off from the list store)",
		seen, lists.GoneAfter)
}

// ago is how long before now t was, in whole seconds; never negative
// (a node's clock may be a little ahead).
func ago(t, now time.Time) time.Duration {
	return max(now.Sub(t), 0).Round(time.Second)
}

// claimTable lists the claims that would be released.
func claimTable(c *cli.Context, posts []lists.Post) error {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tLIST\tSTATE\tCLAIM (QUEUE ID)\tTHE NODE WAS")
	for _, p := range posts {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", p.ID, p.List, p.State, p.Claim, claimWork(p))
	}
	return tw.Flush()
}

// claimWork says what the node holding a claim on p was doing, and so
// what another node does once it is released.
func claimWork(p lists.Post) string {
	switch p.State {
	case lists.PostHeld:
		return "notifying the moderators"
	case lists.PostRejected:
		return "telling the poster of the rejection"
	}
	return "distributing the post"
}

// releaseClaims releases each claim in posts, each on its own, and says
// per post what happened. A claim that changed since it was listed means
// the node (or its replacement) acted on it: a failure, since it hints
// that the node is not gone.
func releaseClaims(c *cli.Context, store *lists.Store, node string, posts []lists.Post) error {
	w, ew := c.App.Writer, c.App.ErrWriter
	released, failed := 0, 0
	for _, p := range posts {
		ok, err := store.ReleaseClaim(c.Context, p.ID, p.Claim)
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(ew, "mod release: post %d (claim %s): %v\n", p.ID, p.Claim, err)
		case !ok:
			failed++
			fmt.Fprintf(ew, "mod release: post %d (claim %s): the claim changed or the post is gone since it was listed: "+
				"is node %s still running?\n", p.ID, p.Claim, node)
		default:
			released++
			fmt.Fprintf(w, "released post %d to %s (%s, claim %s): the next node to look takes it over\n",
				p.ID, p.List, p.State, p.Claim)
		}
	}
	fmt.Fprintf(w, "released %d of %s of node %s\n", released, plural(len(posts), "claim", "claims"), node)
	if failed > 0 {
		return fmt.Errorf("mod release: %s of %d not released (see above)", plural(failed, "claim", "claims"), len(posts))
	}
	return nil
}
