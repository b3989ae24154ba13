package main

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"fanmail/address"
	"fanmail/lists"
)

func moderatorCommand() *cli.Command {
	return &cli.Command{
		Name:  "moderator",
		Usage: "add, remove and list a list's moderators (they get held posts to approve, and post to announce lists)",
		Subcommands: []*cli.Command{
			{Name: "add", Usage: "add moderators (all or nothing)", ArgsUsage: "LIST ADDR...", Action: moderatorAdd},
			{Name: "rm", Usage: "remove moderators (all or nothing)", ArgsUsage: "LIST ADDR...", Action: moderatorRm},
			{Name: "ls", Usage: "print a list's moderators, one per line", ArgsUsage: "LIST", Action: moderatorLs},
		},
	}
}

func moderatorAdd(c *cli.Context) error {
	return changeModerators(c, "moderator add", func(store *lists.Store, l lists.List, addrs []string, unique int) error {
		added, err := store.AddModerators(c.Context, l.Address, addrs)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "added %s to %s (%d already present%s)\n",
			plural(added, "moderator", "moderators"), l.Address, unique-added, dupNote(len(addrs)-unique))
		return nil
	})
}

func moderatorRm(c *cli.Context) error {
	return changeModerators(c, "moderator rm", func(store *lists.Store, l lists.List, addrs []string, unique int) error {
		removed, err := store.RemoveModerators(c.Context, l.Address, addrs)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "removed %s from %s (%s%s)\n",
			plural(removed, "moderator", "moderators"), l.Address, notModerators(unique-removed), dupNote(len(addrs)-unique))
		return nil
	})
}

// changeModerators reads LIST ADDR... (every bad address named, none
// applied) and runs apply with the number of distinct addresses.
func changeModerators(c *cli.Context, cmd string, apply func(store *lists.Store, l lists.List, addrs []string, unique int) error) error {
	args := c.Args().Slice()
	if len(args) < 2 {
		return fmt.Errorf("%s: give a LIST and addresses, e.g. fanmail %s announce@lists.example.org mod@example.org", cmd, cmd)
	}
	var addrs []string
	var bad []error
	for i, a := range args[1:] {
		n, err := address.Normalize(a)
		if err != nil {
			bad = append(bad, fmt.Errorf("argument %d %q: %w (fix the address or leave it out)", i+2, a, err))
			continue
		}
		addrs = append(addrs, n)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s: %s, nothing applied:\n%w", cmd, plural(len(bad), "bad address", "bad addresses"), errors.Join(bad...))
	}
	return withList(c, strings.TrimSpace(args[0]), func(store *lists.Store, l lists.List) error {
		return apply(store, l, addrs, countUnique(addrs))
	})
}

func moderatorLs(c *cli.Context) error {
	list, err := oneList(c, "moderator ls")
	if err != nil {
		return err
	}
	return readStore(c, func(store *lists.Store) error {
		mods, err := store.Moderators(c.Context, list)
		if err != nil {
			return noList(list, err)
		}
		for _, m := range mods {
			fmt.Fprintln(c.App.Writer, m)
		}
		return nil
	})
}

func modCommand() *cli.Command {
	return &cli.Command{
		Name:  "mod",
		Usage: "list, show, approve, reject and discard held posts",
		Subcommands: []*cli.Command{
			{Name: "ls", Usage: "list held posts, of one list or all", ArgsUsage: "[LIST]", Action: modLs},
			{Name: "show", Usage: "show a held post: why it is held, its size and header", ArgsUsage: "ID", Action: modShow},
			{Name: "approve", Usage: "distribute a held post as if it had been accepted", ArgsUsage: "ID", Action: modDecide("approve")},
			{
				Name: "reject", Usage: "reject a held post; the poster is told once (never a null sender)", ArgsUsage: "ID [--reason TEXT]",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "reason", Usage: "`TEXT` for the poster"}},
				Action: modDecide("reject"),
			},
			{Name: "discard", Usage: "delete a held post; nobody is told", ArgsUsage: "ID", Action: modDecide("discard")},
		},
	}
}

func modLs(c *cli.Context) error {
	if c.NArg() > 1 {
		return errors.New("mod ls: give at most one LIST")
	}
	list := strings.TrimSpace(c.Args().First())
	return readStore(c, func(store *lists.Store) error {
		posts, err := store.Posts(c.Context, lists.PostFilter{List: list})
		if err != nil {
			return noList(list, err)
		}
		if len(posts) == 0 {
			fmt.Fprintln(c.App.ErrWriter, "no held posts")
			return nil
		}
		tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tLIST\tSTATE\tRECEIVED\tFROM\tSIZE\tSUBJECT\tWHY")
		for _, p := range posts {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.ID, p.List, p.State,
				p.Received.Local().Format("2006-01-02 15:04"), orNone(p.From), p.Size, clip(p.Subject, 40), p.Reason)
		}
		return tw.Flush()
	})
}

// postID reads the single ID argument of a mod command.
func postID(c *cli.Context, cmd string, args []string) (int64, error) {
	if len(args) != 1 {
		return 0, fmt.Errorf("mod %s: give exactly one post ID (see them with: fanmail mod ls)", cmd)
	}
	id, err := strconv.ParseInt(strings.TrimSpace(args[0]), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("mod %s: %q is not a post ID (a number from: fanmail mod ls)", cmd, args[0])
	}
	return id, nil
}

// noPost turns ErrNoPost into a message that says where to look.
func noPost(id int64, err error) error {
	if errors.Is(err, lists.ErrNoPost) {
		return fmt.Errorf("no held post %d: it was distributed, discarded or expired, or never existed (see: fanmail mod ls)", id)
	}
	return err
}

func modShow(c *cli.Context) error {
	id, err := postID(c, "show", c.Args().Slice())
	if err != nil {
		return err
	}
	return readStore(c, func(store *lists.Store) error {
		p, err := store.GetPost(c.Context, id)
		if err != nil {
			return noPost(id, err)
		}
		header, err := store.PostHeader(c.Context, id, 256<<10)
		if err != nil {
			return noPost(id, err)
		}
		w := tabwriter.NewWriter(c.App.Writer, 0, 0, 1, ' ', 0)
		fmt.Fprintf(w, "post:\t%d\n", p.ID)
		fmt.Fprintf(w, "list:\t%s\n", p.List)
		fmt.Fprintf(w, "state:\t%s\n", p.State)
		fmt.Fprintf(w, "why:\t%s\n", p.Reason)
		if p.Note != "" {
			fmt.Fprintf(w, "reason for the poster:\t%s\n", p.Note)
		}
		fmt.Fprintf(w, "received:\t%s from %s [%s], queue ID %s\n", p.Received.Local().Format(time.RFC3339), orNone(p.Helo), p.RemoteAddr, p.QueueID)
		fmt.Fprintf(w, "sender:\t%s\n", senderOrNull(p.Sender))
		fmt.Fprintf(w, "from:\t%s\n", orNone(p.From))
		fmt.Fprintf(w, "size:\t%d bytes\n", p.Size)
		fmt.Fprintf(w, "expires:\t%s\n", p.Expires.Local().Format(time.RFC3339))
		if err := w.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "\n%s", strings.ReplaceAll(string(header), "\r\n", "\n"))
		return nil
	})
}

// modDecide returns the action of mod approve, reject or discard.
func modDecide(action string) cli.ActionFunc {
	return func(c *cli.Context) error {
		reason := c.String("reason")
		id, err := postID(c, action, c.Args().Slice())
		if err != nil {
			return err
		}
		d := lists.Decision{Action: action, By: cliUser(), Note: reason}
		return withStore(c, func(store *lists.Store) error {
			p, err := store.Decide(c.Context, id, d)
			if errors.Is(err, lists.ErrDecided) {
				return fmt.Errorf("mod %s: %w: nothing changed", action, err)
			}
			if err != nil {
				return noPost(id, err)
			}
			w := c.App.Writer
			switch action {
			case "approve":
				fmt.Fprintf(w, "approved post %d to %s: the server distributes it now, or at its next start\n", id, p.List)
			case "reject":
				if p.Sender == "" {
					fmt.Fprintf(w, "rejected post %d to %s: its sender is the null sender, so nobody is told\n", id, p.List)
				} else {
					fmt.Fprintf(w, "rejected post %d to %s: the server tells %s once\n", id, p.List, p.Sender)
				}
			case "discard":
				fmt.Fprintf(w, "discarded post %d to %s\n", id, p.List)
			}
			return nil
		})
	}
}

// cliUser names who decided from the command line, for the log and for
// moderators who reply to a notice afterwards.
func cliUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

func notModerators(n int) string {
	if n == 1 {
		return "1 was not a moderator"
	}
	return fmt.Sprintf("%d were not moderators", n)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func senderOrNull(s string) string {
	if s == "" {
		return "<> (the null sender: a bounce or an automatic message)"
	}
	return s
}

func clip(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-3]) + "..."
}
