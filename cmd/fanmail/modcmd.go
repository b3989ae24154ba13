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
		Usage: "list, show, approve, reject and discard held posts; release the claims of a node that is gone",
		Subcommands: []*cli.Command{
			{Name: "ls", Usage: "list held posts, of one list or all", ArgsUsage: "[LIST]", Action: modLs},
			{Name: "show", Usage: "show a held post: why it is held, its size and header", ArgsUsage: "ID", Action: modShow},
			{
				Name: "approve", Usage: "distribute held posts as if they had been accepted", ArgsUsage: "ID... | --list LIST --all|--from ADDR",
				Flags: selectFlags(), Action: modDecide("approve"),
			},
			{
				Name: "reject", Usage: "reject held posts; each poster is told once (never a null sender)",
				ArgsUsage: "ID... | --list LIST --all|--from ADDR [--reason TEXT]",
				Flags:     append(selectFlags(), &cli.StringFlag{Name: "reason", Usage: "`TEXT` for the posters"}),
				Action:    modDecide("reject"),
			},
			{
				Name: "discard", Usage: "delete held posts; nobody is told", ArgsUsage: "ID... | --list LIST --all|--from ADDR",
				Flags: selectFlags(), Action: modDecide("discard"),
			},
			modReleaseCommand(),
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

// postID reads the single ID argument of mod show, or of a decision on
// one post.
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

// selectFlags are the flags that pick held posts by list instead of ID.
func selectFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "list", Usage: "decide held posts of `LIST` (with --all or --from) instead of posts named by ID"},
		&cli.BoolFlag{Name: "all", Usage: "every held post of the --list"},
		&cli.StringFlag{Name: "from", Usage: "the held posts of the --list whose From: or envelope sender is `ADDR`"},
	}
}

// modDecide returns the action of mod approve, reject or discard: of one
// post by ID, of several, or of the held posts of a list.
func modDecide(action string) cli.ActionFunc {
	return func(c *cli.Context) error {
		d := lists.Decision{Action: action, By: cliUser(), Note: c.String("reason")}
		args := c.Args().Slice()
		if len(args) == 1 && !c.IsSet("list") && !c.IsSet("all") && !c.IsSet("from") {
			return decideOne(c, action, args, d)
		}
		sel, err := postSelector(c, action, args)
		if err != nil {
			return err
		}
		return withStore(c, func(store *lists.Store) error {
			return decideMany(c, store, action, sel, d)
		})
	}
}

// decideOne decides the one post args names; its failure is the
// command's error.
func decideOne(c *cli.Context, action string, args []string, d lists.Decision) error {
	id, err := postID(c, action, args)
	if err != nil {
		return err
	}
	return withStore(c, func(store *lists.Store) error {
		p, err := store.Decide(c.Context, id, d)
		if errors.Is(err, lists.ErrDecided) {
			return fmt.Errorf("mod %s: %w: nothing changed", action, err)
		}
		if err != nil {
			return noPost(id, err)
		}
		fmt.Fprintln(c.App.Writer, decidedLine(action, p, true))
		return nil
	})
}

// decidedLine says what a decision did to p; long adds when the server
// acts on an approval, which a list of many says once at its end.
func decidedLine(action string, p lists.Post, long bool) string {
	switch action {
	case "approve":
		if long {
			return fmt.Sprintf("approved post %d to %s: the server distributes it now, or at its next start", p.ID, p.List)
		}
		return fmt.Sprintf("approved post %d to %s", p.ID, p.List)
	case "reject":
		if p.Sender == "" {
			return fmt.Sprintf("rejected post %d to %s: its sender is the null sender, so nobody is told", p.ID, p.List)
		}
		return fmt.Sprintf("rejected post %d to %s: the server tells %s once", p.ID, p.List, p.Sender)
	}
	return fmt.Sprintf("discarded post %d to %s", p.ID, p.List)
}

// selector is which posts a decision of several applies to: the IDs
// given (with the arguments that were not IDs), or a list's held posts.
type selector struct {
	ids     []int64
	badArgs []string // "argument N "X": ..." for each argument that is no post ID
	list    string
	from    string // with list: only posts from this address
}

// postSelector reads ID... or --list LIST --all|--from ADDR. Arguments
// that are no post ID are failures of their own, as a missing post is:
// the others are decided all the same. A repeated ID counts once.
func postSelector(c *cli.Context, action string, args []string) (selector, error) {
	var sel selector
	list := strings.TrimSpace(c.String("list"))
	if c.IsSet("list") || c.Bool("all") || c.IsSet("from") {
		switch {
		case len(args) > 0:
			return sel, fmt.Errorf("mod %s: give post IDs or --list, not both", action)
		case list == "":
			return sel, fmt.Errorf("mod %s: --all and --from need --list LIST, e.g. fanmail mod %s --list announce@lists.example.org --all", action, action)
		case !c.Bool("all") && !c.IsSet("from"):
			// --list alone is refused, so that a forgotten --from does
			// not decide a whole list.
			return sel, fmt.Errorf("mod %s: with --list, say which posts: --all (every held post of the list) or --from ADDR", action)
		case c.Bool("all") && c.IsSet("from"):
			return sel, fmt.Errorf("mod %s: give --all or --from ADDR, not both", action)
		}
		sel.list = list
		if c.IsSet("from") {
			from, err := address.Normalize(c.String("from"))
			if err != nil {
				return sel, fmt.Errorf("mod %s: --from %q: %w", action, c.String("from"), err)
			}
			sel.from = from
		}
		return sel, nil
	}
	if len(args) == 0 {
		return sel, fmt.Errorf("mod %s: give one or more post IDs (see them with: fanmail mod ls), or --list LIST --all", action)
	}
	seen := map[int64]bool{}
	for i, a := range args {
		id, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
		if err != nil || id <= 0 {
			sel.badArgs = append(sel.badArgs, fmt.Sprintf("argument %d %q is not a post ID (a number from: fanmail mod ls)", i+1, a))
			continue
		}
		if !seen[id] {
			seen[id] = true
			sel.ids = append(sel.ids, id)
		}
	}
	return sel, nil
}

// decideMany decides the posts sel picks.
func decideMany(c *cli.Context, store *lists.Store, action string, sel selector, d lists.Decision) error {
	if sel.list == "" {
		return decideIDs(c, store, action, sel, d)
	}
	posts, err := store.Posts(c.Context, lists.PostFilter{List: sel.list, State: lists.PostHeld, From: sel.from})
	if err != nil {
		return noList(sel.list, err)
	}
	if len(posts) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "no held posts%s to %s\n", fromPart(sel.from), sel.list)
		return nil
	}
	for _, p := range posts {
		sel.ids = append(sel.ids, p.ID)
	}
	return decideIDs(c, store, action, sel, d)
}

// decideIDs decides the posts sel.ids, each on its own: a post that
// fails is reported on stderr and the others go on; stdout says what
// became of each, then the count. Any failure makes the command fail.
// Posts picked by --list (sel.list set) that a moderator or another
// command decided since they were listed are skipped, not failed: they
// are no longer held, which is what the selector asks for.
func decideIDs(c *cli.Context, store *lists.Store, action string, sel selector, d lists.Decision) error {
	ids := sel.ids
	w, ew := c.App.Writer, c.App.ErrWriter
	failed := len(sel.badArgs)
	for _, b := range sel.badArgs {
		fmt.Fprintf(ew, "mod %s: %s\n", action, b)
	}
	done, skipped := 0, 0
	for _, o := range store.DecideEach(c.Context, ids, d) {
		switch {
		case o.Err == nil:
			done++
			fmt.Fprintln(w, decidedLine(action, o.Post, false))
		case sel.list != "" && (errors.Is(o.Err, lists.ErrDecided) || errors.Is(o.Err, lists.ErrNoPost)):
			skipped++
			fmt.Fprintf(w, "skipped post %d: decided meanwhile (%s)\n", o.ID, decidedMeanwhile(o))
		case errors.Is(o.Err, lists.ErrDecided):
			failed++
			fmt.Fprintf(ew, "mod %s: %v: nothing changed\n", action, o.Err)
		default:
			failed++
			fmt.Fprintf(ew, "mod %s: %v\n", action, noPost(o.ID, o.Err))
		}
	}
	total := done + skipped + failed
	summary := fmt.Sprintf("%s %d of %s", lists.PastTense(action), done, plural(total, "post", "posts"))
	var notes []string
	if skipped > 0 {
		notes = append(notes, fmt.Sprintf("%d skipped", skipped))
	}
	if failed > 0 {
		notes = append(notes, fmt.Sprintf("%d failed", failed))
	}
	if len(notes) > 0 {
		summary += " (" + strings.Join(notes, ", ") + ")"
	}
	if action == "approve" && done > 0 {
		summary += ": the server distributes them now, or at its next start"
	}
	fmt.Fprintln(w, summary)
	if failed > 0 {
		return fmt.Errorf("mod %s: %s of %d not %s (see above)", action, plural(failed, "post", "posts"), total, lists.PastTense(action))
	}
	return nil
}

// decidedMeanwhile says what became of a post a --list run found held
// and could not decide.
func decidedMeanwhile(o lists.Outcome) string {
	if errors.Is(o.Err, lists.ErrNoPost) {
		return "discarded or distributed since"
	}
	msg := o.Err.Error()
	return strings.TrimSuffix(msg, ": "+lists.ErrDecided.Error())
}

func fromPart(from string) string {
	if from == "" {
		return ""
	}
	return " from " + from
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
