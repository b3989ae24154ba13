package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"fanmail/lists"
)

// fanmail node ls shows what the list store knows of every node that
// shares it: when it started, when it was last seen, and whether it
// runs (see modrelease.go for what mod release makes of it).
func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "the servers that share the list store",
		Subcommands: []*cli.Command{{
			Name:  "ls",
			Usage: "list every node that reported to the list store: version, start, last heartbeat, and whether it runs",
			Action: func(c *cli.Context) error {
				if c.NArg() != 0 {
					return errors.New("node ls: takes no arguments")
				}
				return readStore(c, func(store *lists.Store) error {
					nodes, err := store.Nodes(c.Context)
					if err != nil {
						return err
					}
					if len(nodes) == 0 {
						fmt.Fprintln(c.App.ErrWriter, "no node has reported to this list store: none has run fanmail serve on it since nodes report")
						return nil
					}
					return nodeTable(c, nodes, time.Now())
				})
			},
		}},
	}
}

func nodeTable(c *cli.Context, nodes []lists.Node, now time.Time) error {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tVERSION\tSTARTED\tLAST SEEN\tAGO\tSTATE")
	for _, n := range nodes {
		state := "running"
		switch {
		case n.Stopped:
			state = "stopped cleanly"
		case !n.Alive(now):
			state = "gone (no heartbeat for over " + lists.GoneAfter.String() + ")"
		}
		version := n.Version
		if version == "" {
			version = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, version, n.Started.UTC().Format(time.RFC3339),
			n.LastSeen.UTC().Format(time.RFC3339), ago(n.LastSeen, now), state)
	}
	return tw.Flush()
}
