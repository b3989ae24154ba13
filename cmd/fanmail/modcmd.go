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

	"fanmail/lists"
)

// moderatorRoster is what the moderator commands change and list.
func moderatorRoster() roster {
	return roster{
		one: "moderator", many: "moderators",
		args: moderatorArgs,
		add: func(c *cli.Context, store *lists.Store, list string, addrs []string) (int, error) {
			return store.AddModerators(c.Context, list, addrs)
		},
		rm: func(c *cli.Context, store *lists.Store, list string, addrs []string) (int, error) {
			return store.RemoveModerators(c.Context, list, addrs)
		},
		ls: func(c *cli.Context, store *lists.Store, list string) ([]string, error) {
			return store.Moderators(c.Context, list)
		},
	}
}

// moderatorArgs reads LIST ADDR... (every bad address named, none
// applied).
func moderatorArgs(c *cli.Context, cmd string) (string, []string, error) {
	args := c.Args().Slice()
	if len(args) < 2 {
		return "", nil, fmt.Errorf("%s: give a LIST and addresses, e.g. fanmail %s announce@lists.example.org mod@example.org", cmd, cmd)
	}
	addrs, bad := normalizeArgs(args[1:], 2)
	if err := badAddresses(cmd, bad); err != nil {
		return "", nil, err
	}
	return strings.TrimSpace(args[0]), addrs, nil
}

func moderatorCommand() *cli.Command {
	moderators := moderatorRoster()
	return &cli.Command{
		Name:  "moderator",
		Usage: "add, remove and list a list's moderators (they get held posts to approve, and post to announce lists)",
		Subcommands: []*cli.Command{
			{Name: "add", Usage: "add moderators (all or nothing)", ArgsUsage: "LIST ADDR...", Action: moderators.addAction},
			{Name: "rm", Usage: "remove moderators (all or nothing)", ArgsUsage: "LIST ADDR...", Action: moderators.rmAction},
			{Name: "ls", Usage: "print a list's moderators, one per line", ArgsUsage: "LIST", Action: moderators.lsAction},
		},
	}
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
