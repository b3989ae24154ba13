package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"fanmail/lists"
)

// The member request commands: the subscription requests made by mail
// that wait for their address or a moderator, seen and decided on the
// server. They change the store only, as mod does: the running server
// sends an approved subscription's welcome (listmail), as it does for a
// moderator's approval by mail.

func memberRequestCommands() []*cli.Command {
	return []*cli.Command{
		{Name: "requests", Usage: "list open requests made by mail: waiting for the address's confirmation, or for a moderator", ArgsUsage: "LIST", Action: memberRequests},
		{Name: "approve", Usage: "approve subscriptions waiting for a moderator: the member is added now, and the server sends the welcome within a minute (or at its next start)",
			ArgsUsage: "LIST ID...", Action: memberDecide("approve")},
		{Name: "reject", Usage: "reject (delete) open requests; nobody is told", ArgsUsage: "LIST ID...", Action: memberDecide("reject")},
	}
}

func memberRequests(c *cli.Context) error {
	return onList(c, "member requests", readList, func(store *lists.Store, l lists.List) error {
		reqs, err := store.Requests(c.Context, l.Address)
		if err != nil {
			return err
		}
		if len(reqs) == 0 {
			fmt.Fprintf(c.App.ErrWriter, "no open requests on %s\n", l.Address)
			return nil
		}
		tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tADDRESS\tACTION\tWAITS FOR\tCREATED\tEXPIRES")
		for _, r := range reqs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Address, r.Action, waitsFor(r.State),
				r.Created.Local().Format("2006-01-02 15:04"), r.Expires.Local().Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	})
}

func waitsFor(s lists.RequestState) string {
	switch s {
	case lists.StateConfirm:
		return "address"
	case lists.StateModerator:
		return "moderator"
	}
	return string(s)
}

// memberDecide returns the action of member approve or reject: each ID
// is decided on its own, and every one that fails is reported.
func memberDecide(action string) cli.ActionFunc {
	return func(c *cli.Context) error {
		cmd := "member " + action
		args := c.Args().Slice()
		if len(args) < 2 {
			return fmt.Errorf("%s: give a LIST and request IDs, e.g. fanmail %s announce@lists.example.org 7 (see them with: fanmail member requests LIST)", cmd, cmd)
		}
		list := strings.TrimSpace(args[0])
		var ids []int64
		for _, a := range args[1:] {
			id, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("%s: %q is not a request ID (a number from: fanmail member requests %s)", cmd, a, list)
			}
			ids = append(ids, id)
		}
		by := cliUser()
		return withList(c, list, func(store *lists.Store, l lists.List) error {
			var errs []error
			for _, id := range ids {
				if err := decideRequest(c, store, l.Address, id, action, by); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", cmd, err))
				}
			}
			return errors.Join(errs...)
		})
	}
}

func decideRequest(c *cli.Context, store *lists.Store, list string, id int64, action, by string) error {
	w := c.App.Writer
	if action == "reject" {
		r, err := store.RejectRequest(c.Context, list, id)
		if err != nil {
			return requestFix(list, err)
		}
		fmt.Fprintf(w, "rejected request %d (%s %s) on %s\n", id, r.Action, r.Address, list)
		return nil
	}
	o, err := store.ApproveRequest(c.Context, list, id, by)
	if err != nil {
		return requestFix(list, err)
	}
	r := o.Request
	switch {
	case o.Welcome:
		fmt.Fprintf(w, "approved request %d: %s is now a member of %s; the server sends the welcome within a minute, or at its next start\n", id, r.Address, list)
	case o.Changed:
		fmt.Fprintf(w, "approved request %d (%s %s) on %s\n", id, r.Action, r.Address, list)
	default:
		fmt.Fprintf(w, "approved request %d (%s %s) on %s: nothing to change, the request is closed\n", id, r.Action, r.Address, list)
	}
	return nil
}

// requestFix turns the store's errors about a request into ones that
// say what to do instead.
func requestFix(list string, err error) error {
	var re *lists.RequestError
	if !errors.As(err, &re) {
		return err
	}
	r := re.Request
	switch {
	case re.OtherList != "":
		return fmt.Errorf("request %d is for list %s, not %s (see: fanmail member requests %s)", r.ID, re.OtherList, list, re.OtherList)
	case errors.Is(err, lists.ErrNoRequest):
		return fmt.Errorf("no open request %d on %s: it was approved, rejected or expired, or never existed (see: fanmail member requests %s)", r.ID, list, list)
	case errors.Is(err, lists.ErrRequestExpired):
		return fmt.Errorf("request %d (%s %s) expired at %s: nothing changed; the address can ask again",
			r.ID, r.Action, r.Address, r.Expires.Local().Format(time.RFC3339))
	case errors.Is(err, lists.ErrUnconfirmed):
		return fmt.Errorf("request %d (%s %s) waits for the address's own confirmation, which only a reply from %s gives (double opt-in); to change the membership without it: %s",
			r.ID, r.Action, r.Address, r.Address, byHand(list, r.Request))
	}
	return err
}

// byHand is the command that does by hand what request r asks.
func byHand(list string, r lists.Request) string {
	switch r.Action {
	case lists.RequestUnsubscribe:
		return fmt.Sprintf("fanmail member rm %s %s", list, r.Address)
	case lists.RequestEnable:
		return fmt.Sprintf("fanmail member enable %s %s", list, r.Address)
	}
	return fmt.Sprintf("fanmail member add %s %s", list, r.Address)
}
