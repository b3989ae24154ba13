package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"fanmail/lists"
	"fanmail/queuegroups"
)

// A node that takes a decided post claims it with the queue ID it is
// making (lists.Store.Claim), and settles its own claims when it starts
// again. A node that never starts again keeps them, and its posts wait
// for ever: mod release gives them up so that another node takes the
// posts. The list store records no sign of life of a node (no heartbeat
// or lease), so the command cannot tell a node that is gone from one
// that is only slow; the operator says so with --force, after checking
// that none of the claims' queue IDs is in that node's spool.

func modReleaseCommand() *cli.Command {
	return &cli.Command{
		Name:      "release",
		Usage:     "list, then (with --force) give up, the claims on held posts of a node that is gone for good, so another node does them",
		ArgsUsage: "--node NAME [--force]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "node", Usage: "the [node] `NAME` of the node that is gone (the end of its queue IDs)"},
			&cli.BoolFlag{Name: "force", Usage: "release them: NAME is stopped for good and none of the queue IDs listed is in its spool"},
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
		if len(mine) == 0 {
			fmt.Fprintf(c.App.ErrWriter, "node %s holds no claims on held posts\n", node)
			return nil
		}
		if !c.Bool("force") {
			if err := claimTable(c, mine); err != nil {
				return err
			}
			return fmt.Errorf("mod release: nothing released. fanmail cannot tell whether node %s is running: "+
				"the list store keeps no sign of life of a node. Releasing the claim of a node that still runs, "+
				"or whose spool holds the queue ID, sends that post twice. Make sure %s is stopped for good and "+
				"that none of the queue IDs above is in its spool (fanmail queue on that node; if its spool can be "+
				"moved to a replacement started with [node] name = %q, do that instead: it settles these claims "+
				"itself), then run again with --force", node, node, node)
		}
		return releaseClaims(c, store, node, mine)
	})
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
