package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"fanmail/bounces"
	"fanmail/lists"
)

// memberLsBouncing prints the members of list with a bounce score or
// disabled delivery: state, score, last bounce, warnings.
func memberLsBouncing(c *cli.Context) error {
	return onList(c, "member ls --bouncing", readList, func(store *lists.Store, l lists.List) error {
		ms, err := store.BouncingMembers(c.Context, l.Address)
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			fmt.Fprintf(c.App.ErrWriter, "no member of %s has bounces\n", l.Address)
			return nil
		}
		w := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "MEMBER\tSTATE\tSCORE\tLAST BOUNCE\tWARNINGS")
		for _, m := range ms {
			fmt.Fprintf(w, "%s\t%s\t%g\t%s\t%d\n", m.Address, deliveryState(m.State), m.State.Score,
				when(m.State.LastBounce), m.State.WarningsSent)
		}
		return w.Flush()
	})
}

// onMember runs fn on the member ADDR of LIST, the two arguments of the
// command cmd, with the store opened by open; a list or a member that
// does not exist is reported with how to see what does.
func onMember(c *cli.Context, cmd string, open listOpener, fn func(store *lists.Store, l lists.List, addr string) error) error {
	if c.NArg() != 2 {
		return fmt.Errorf("%s: give a LIST and a member ADDR, e.g. fanmail %s announce@lists.example.org bob@example.com", cmd, cmd)
	}
	list, addr := strings.TrimSpace(c.Args().Get(0)), strings.TrimSpace(c.Args().Get(1))
	return open(c, list, func(store *lists.Store, l lists.List) error {
		err := fn(store, l, addr)
		if errors.Is(err, lists.ErrNotMember) {
			return fmt.Errorf("%s is not a member of %s (see the members with: fanmail member ls %s)", addr, l.Address, l.Address)
		}
		return err
	})
}

func memberShow(c *cli.Context) error {
	return onMember(c, "member show", readList, func(store *lists.Store, l lists.List, addr string) error {
		m, err := store.MemberBounceInfo(c.Context, l.Address, addr)
		if err != nil {
			return err
		}
		st, err := store.Settings(c.Context, l.Address)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(c.App.Writer, 0, 0, 1, ' ', 0)
		fmt.Fprintf(w, "member:\t%s\n", m.Address)
		fmt.Fprintf(w, "list:\t%s\n", m.List)
		fmt.Fprintf(w, "delivery:\t%s\n", deliveryState(m.State))
		fmt.Fprintf(w, "bounce score:\t%g (threshold %g; a bounce older than %s starts it again)\n", m.State.Score,
			st.BounceScoreThreshold, lists.FormatDuration(st.BounceInfoStaleAfter))
		fmt.Fprintf(w, "last bounce:\t%s\n", when(m.State.LastBounce))
		if !m.State.Disabled.IsZero() {
			fmt.Fprintf(w, "disabled:\t%s\n", when(m.State.Disabled))
			fmt.Fprintf(w, "warnings sent:\t%d of %d (last %s); removed one interval (%s) after the last\n", m.State.WarningsSent,
				st.BounceWarnings, when(m.State.LastWarning), lists.FormatDuration(st.BounceWarningsInterval))
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if len(m.Events) == 0 {
			fmt.Fprintln(c.App.Writer, "no bounces recorded")
			return nil
		}
		fmt.Fprintf(c.App.Writer, "\nbounces, newest first (%d):\n", len(m.Events))
		for _, e := range m.Events {
			fmt.Fprintf(c.App.Writer, "- %s  %s %s %s (%s), from %s\n", when(e.At), e.Action, e.Status, e.Severity, e.Source, orDash(e.RemoteMTA))
			fmt.Fprintf(c.App.Writer, "  diagnostic: %s\n", orDash(e.Diagnostic))
			fmt.Fprintf(c.App.Writer, "  scored:     %s\n", orDash(e.Scored))
			if e.Evidence != "" && e.Evidence != e.Diagnostic {
				fmt.Fprintln(c.App.Writer, "  evidence:")
				for _, line := range strings.Split(strings.TrimRight(e.Evidence, "\n"), "\n") {
					fmt.Fprintf(c.App.Writer, "    | %s\n", strings.TrimRight(line, "\r"))
				}
			}
		}
		return nil
	})
}

func memberEnable(c *cli.Context) error {
	return onMember(c, "member enable", withList, func(store *lists.Store, l lists.List, addr string) error {
		was, err := store.EnableMember(c.Context, l.Address, addr)
		if err != nil {
			return err
		}
		if was {
			fmt.Fprintf(c.App.Writer, "%s: delivery to %s enabled again; its bounce score starts from 0\n", l.Address, addr)
		} else {
			fmt.Fprintf(c.App.Writer, "%s: delivery to %s was not disabled; its bounce score starts from 0\n", l.Address, addr)
		}
		return nil
	})
}

func deliveryState(s bounces.State) string {
	if s.Disabled.IsZero() {
		return "enabled"
	}
	return "disabled by bounces"
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
