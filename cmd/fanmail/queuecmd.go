package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"fanmail/config"
	"fanmail/control"
	"fanmail/queuegroups"
)

func queueCommand() *cli.Command {
	return &cli.Command{
		Name:  "queue",
		Usage: "list the queue per group and directory (like mailq); see the subcommands to act on it",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "top", Value: 5, Usage: "show the `N` destination domains with most pending recipients per directory"},
			&cli.IntFlag{Name: "limit", Value: 20, Usage: "list at most `N` messages per directory, oldest first"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: queueList,
		Subcommands: []*cli.Command{
			{Name: "show", Usage: "show one message: envelopes, recipients, last replies", ArgsUsage: "ID", Action: queueShow,
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}}},
			{Name: "flush", Usage: "retry deferred mail now (sendmail -q, postqueue -f)", Action: queueFlush,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "group", Usage: "only queue group `G`"},
					&cli.StringFlag{Name: "domain", Usage: "only mail to domain `D`"},
				}},
			{Name: "delete", Usage: "remove a message from the queue (postsuper -d); no DSN is sent to its sender, by design", ArgsUsage: "ID",
				Description: "The message's pending recipients are dropped and nothing is reported to the sender: the operator\n" +
					"removed the mail on purpose. Recipients that failed before were reported when their attempt ended.",
				Action: queueDelete},
		},
	}
}

// queueSource is the live queue of a running server, or the spool read
// directly when no server runs.
type queueSource interface {
	Summary(top, limit int) ([]queuegroups.DirSummary, error)
	Show(id string) (queuegroups.MessageDetail, error)
}

type offlineQueue struct{ q *queuegroups.Queue }

func (o offlineQueue) Summary(top, limit int) ([]queuegroups.DirSummary, error) {
	return o.q.Summary(top, limit), nil
}
func (o offlineQueue) Show(id string) (queuegroups.MessageDetail, error) { return o.q.Show(id) }

// withQueue runs fn against the running server, or else against a
// read-only replay of the spool (as postqueue does when the mail system
// is down), saying so on stderr.
func withQueue(c *cli.Context, fn func(queueSource) error) error {
	cfg, err := readConfig(c)
	if err != nil {
		return err
	}
	client, err := control.Dial(cfg.AdminSocket())
	if err == nil {
		return fn(client)
	}
	sc, err := cfg.Spool(nil)
	if err != nil {
		return err
	}
	q, err := queuegroups.OpenReadOnly(sc)
	if err != nil {
		return err
	}
	defer q.Close(c.Context)
	fmt.Fprintf(c.App.ErrWriter, "fanmail: no server running on %s; reading the queue directly\n", absPath(cfg.DataDir))
	return fn(offlineQueue{q})
}

func queueList(c *cli.Context) error {
	if c.NArg() != 0 {
		return errors.New("queue: takes no arguments (did you mean fanmail queue show ID?)")
	}
	return withQueue(c, func(src queueSource) error {
		dirs, err := src.Summary(c.Int("top"), c.Int("limit"))
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return printJSON(c.App.Writer, dirs)
		}
		printSummary(c.App.Writer, dirs, time.Now())
		return nil
	})
}

func printSummary(w io.Writer, dirs []queuegroups.DirSummary, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tDIRECTORY\tMESSAGES\tENVELOPES\tRECIPIENTS\tINFLIGHT\tDEFERRED\tOLDEST")
	total := 0
	for _, d := range dirs {
		oldest := "-"
		if !d.Oldest.IsZero() {
			oldest = now.Sub(d.Oldest).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", d.Group, d.Dir, d.Messages, d.Envelopes, d.Recipients, d.Inflight, d.Deferred, oldest)
		total += d.Recipients
	}
	tw.Flush()
	for _, d := range dirs {
		if d.Messages == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s %s\n", d.Group, d.Dir)
		var top []string
		for _, dc := range d.TopDomains {
			top = append(top, fmt.Sprintf("%s %d", dc.Domain, dc.Recipients))
		}
		if len(top) > 0 {
			fmt.Fprintf(w, "  top domains: %s\n", strings.Join(top, ", "))
		}
		if d.MovedAside > 0 {
			fmt.Fprintf(w, "  %d moved aside: delivery panicked or crashed the server; never retried until deleted\n", d.MovedAside)
		}
		for _, m := range d.List {
			line := fmt.Sprintf("  %s  %s  %d bytes  %d pending", m.ID, m.Received.Format(time.DateTime), m.Size, m.Recipients)
			if m.MovedAside {
				line += "  MOVED ASIDE"
			}
			fmt.Fprintln(w, line)
		}
		if d.Messages > len(d.List) {
			fmt.Fprintf(w, "  … and %d more\n", d.Messages-len(d.List))
		}
	}
	fmt.Fprintf(w, "\n%d recipients pending\n", total)
}

func queueShow(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("queue show: give exactly one queue ID, as listed by fanmail queue")
	}
	return withQueue(c, func(src queueSource) error {
		md, err := src.Show(c.Args().First())
		if err != nil {
			return fmt.Errorf("queue show: %w", err)
		}
		if c.Bool("json") {
			return printJSON(c.App.Writer, md)
		}
		w := c.App.Writer
		fmt.Fprintf(w, "message %s, received %s, %d bytes\n", md.ID, md.Received.Format(time.RFC3339), md.Size)
		if len(md.MovedAside) > 0 {
			fmt.Fprintf(w, "MOVED ASIDE in group %s: its delivery panicked or crashed the server too often;\n"+
				"it is kept but never retried (queue flush skips it); fanmail queue delete %s removes it\n",
				strings.Join(md.MovedAside, ", "), md.ID)
		}
		for _, e := range md.Envelopes {
			state := fmt.Sprintf("%d attempts", e.Attempts)
			if e.Strikes > 0 {
				state += fmt.Sprintf(", %d in a row panicked or died with the server", e.Strikes)
			}
			switch {
			case e.Inflight:
				state += ", delivering now"
			case !e.Next.IsZero():
				state += ", next " + e.Next.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "\n%s to %s via group %s (%s), sender <%s>\n", "envelope", e.Domain, e.Group, state, e.Sender)
			for _, r := range e.Recipients {
				line := fmt.Sprintf("  %-9s %s", r.Status, r.Address)
				if r.Reply != "" {
					line += "  (" + r.Reply
					if r.Host != "" {
						line += " from " + r.Host
					}
					line += ")"
				}
				fmt.Fprintln(w, line)
			}
		}
		return nil
	})
}

// liveQueue is for the tools that change the queue: with a server they go
// through it; without one, flush has nothing to wake and delete edits
// the spool itself under the server's lock.
func liveQueue(c *cli.Context) (*control.Client, config.Config, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, cfg, err
	}
	client, err := control.Dial(cfg.AdminSocket())
	return client, cfg, err
}

func queueFlush(c *cli.Context) error {
	if c.NArg() != 0 {
		return errors.New("queue flush: takes no arguments; use --group G and --domain D to narrow it")
	}
	client, _, err := liveQueue(c)
	if err != nil {
		return fmt.Errorf("queue flush: %w; deferred mail is retried when fanmail serve starts", err)
	}
	moved, err := client.Flush(c.String("group"), strings.ToLower(c.String("domain")))
	if err != nil {
		return fmt.Errorf("queue flush: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "%d deferred envelopes are due now\n", moved)
	return nil
}

func queueDelete(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("queue delete: give exactly one queue ID, as listed by fanmail queue")
	}
	id := c.Args().First()
	client, cfg, err := liveQueue(c)
	var dropped int
	switch {
	case err == nil:
		dropped, err = client.Delete(id)
	case errors.Is(err, control.ErrNoServer):
		dropped, err = deleteOffline(cfg, id)
	}
	if err != nil {
		return fmt.Errorf("queue delete: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "deleted %s (%d pending recipients dropped; no DSN is sent to the sender)\n", id, dropped)
	return nil
}

// deleteOffline opens the spool as the server would (taking its locks,
// so it fails if a server holds them) without starting any runner.
func deleteOffline(cfg config.Config, id string) (int, error) {
	sc, err := cfg.Spool(nil)
	if err != nil {
		return 0, err
	}
	q, err := queuegroups.Open(sc, nil)
	if err != nil {
		return 0, err
	}
	dropped, err := q.Delete(id)
	return dropped, errors.Join(err, q.Close(context.Background()))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
