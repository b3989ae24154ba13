package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"fanmail/control"
	"fanmail/metrics"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show a running server's uptime, SMTP sessions, queue per group and last-minute rates",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return errors.New("status: takes no arguments")
			}
			cfg, err := readConfig(c)
			if err != nil {
				return err
			}
			client, err := control.Dial(cfg.AdminSocket())
			if err != nil {
				return fmt.Errorf("status: %w (start it with: fanmail serve)", err)
			}
			var st metrics.Status
			if err := client.Status(&st); err != nil {
				return fmt.Errorf("status: %w", err)
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, st)
			}
			printStatus(c.App.Writer, st, time.Now())
			return nil
		},
	}
}

func printStatus(w io.Writer, st metrics.Status, now time.Time) {
	up := time.Duration(st.Uptime * float64(time.Second)).Round(time.Second)
	fmt.Fprintf(w, "fanmail %s\n", st.Version)
	fmt.Fprintf(w, "up %s (since %s), %s open\n", up, st.Started.Format(time.RFC3339), plural(int(st.Sessions), "SMTP session", "SMTP sessions"))
	r := st.Rates
	fmt.Fprintf(w, "last %s: %s accepted, %s rejected, %s refused; recipients: %d delivered, %d deferred, %d bounced\n",
		time.Duration(st.Window*float64(time.Second)).Round(time.Second),
		plural(int(r.Accepted), "post", "posts"), plural(int(r.Rejected), "command", "commands"),
		plural(int(r.Refused), "connection", "connections"), r.Delivered, r.Deferred, r.Bounced)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nGROUP\tMESSAGES\tENVELOPES\tRECIPIENTS\tDEFERRED\tRUNNERS BUSY\tOLDEST")
	for _, g := range st.Groups {
		oldest := "-"
		if !g.Oldest.IsZero() {
			oldest = now.Sub(g.Oldest).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", g.Name, g.Messages, g.Envelopes, g.Recipients, g.Deferred, g.Inflight, oldest)
	}
	tw.Flush()
}
