package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"

	"fanmail/address"
	"fanmail/config"
	"fanmail/expander"
	"fanmail/lists"
)

// openStore opens the list store named by the effective config, creating
// the data directory and the store if needed, for a command that writes.
func openStore(c *cli.Context) (*lists.Store, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	return lists.Open(cfg.ListsDB())
}

// withStore runs fn with an open store and closes it afterwards; the
// store is created if missing, for commands that write.
func withStore(c *cli.Context, fn func(*lists.Store) error) error {
	store, err := openStore(c)
	if err != nil {
		return err
	}
	return errors.Join(fn(store), store.Close())
}

// readStore runs fn with the store open, for a command that only reads:
// it creates neither the data directory nor the store. Without a store
// fn does not run and the error is an *emptyDataDir naming the directory.
func readStore(c *cli.Context, fn func(*lists.Store) error) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	// A store set by [lists] database is where it says, whatever the
	// data directory.
	if cfg.Lists.Database == "" {
		if err := checkDataDir(cfg); err != nil {
			return err
		}
	}
	if file, ok := lists.SQLiteFile(cfg.ListsDB()); ok {
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			return &emptyDataDir{dir: storeDir(cfg)}
		}
	}
	store, err := lists.Open(cfg.ListsDB())
	if err != nil {
		return err
	}
	err = fn(store)
	if e := (*emptyDataDir)(nil); errors.As(err, &e) && e.dir == "" {
		e.dir = storeDir(cfg)
	}
	return errors.Join(err, store.Close())
}

// storeDir names where the lists are for a message: the data directory,
// or the store [lists] database names.
func storeDir(cfg config.Config) string {
	if cfg.Lists.Database == "" {
		return absPath(cfg.DataDir)
	}
	return lists.Describe(cfg.Lists.Database)
}

// emptyDataDir is a data directory without lists, or without a store.
type emptyDataDir struct{ dir string }

func (e *emptyDataDir) Error() string {
	return fmt.Sprintf("no lists yet in %s (create one with: fanmail list create LIST@DOMAIN)", e.dir)
}

// listOpener opens the store and looks up a list for fn: withList for a
// command that changes it, readList for one that only reads.
type listOpener func(c *cli.Context, list string, fn func(*lists.Store, lists.List) error) error

// withList runs fn with the store open and list looked up. A list that
// does not exist, before fn or by the time fn changes it, is reported
// with how to create it.
func withList(c *cli.Context, list string, fn func(*lists.Store, lists.List) error) error {
	return withStore(c, lookUpList(c, list, fn))
}

// readList is withList for a command that only reads (readStore).
func readList(c *cli.Context, list string, fn func(*lists.Store, lists.List) error) error {
	return readStore(c, lookUpList(c, list, fn))
}

func lookUpList(c *cli.Context, list string, fn func(*lists.Store, lists.List) error) func(*lists.Store) error {
	return func(store *lists.Store) error {
		l, err := store.GetList(c.Context, list)
		if err == nil {
			err = fn(store, l)
		}
		return noList(list, err)
	}
}

// noList turns ErrNoList into a message that says how to fix it.
func noList(list string, err error) error {
	if errors.Is(err, lists.ErrNoList) {
		return fmt.Errorf("list %s does not exist (create it with: fanmail list create %s)", list, list)
	}
	return err
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "create, inspect and delete lists",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create an empty list",
				ArgsUsage: "LIST@DOMAIN",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "owner", Usage: "owner's `ADDR`ESS"}},
				Action:    listCreate,
			},
			{Name: "delete", Usage: "delete a list and all its members", ArgsUsage: "LIST", Action: listDelete},
			{Name: "show", Usage: "show a list's details and every setting, saying which are defaults", ArgsUsage: "LIST", Action: listShow},
			listSetCommand(),
			{Name: "ls", Usage: "list all lists with their member counts", Action: listLs},
		},
	}
}

func listCreate(c *cli.Context) error {
	owner, args := c.String("owner"), c.Args().Slice()
	if len(args) != 1 {
		return errors.New("list create: give exactly one LIST@DOMAIN, e.g. fanmail list create announce@lists.example.org --owner you@example.org")
	}
	list, err := address.Normalize(args[0])
	if err != nil {
		return fmt.Errorf("list create: list address %q: %w", args[0], err)
	}
	if owner != "" {
		if _, err := address.Parse(owner); err != nil {
			return fmt.Errorf("list create: --owner %q: %w", owner, err)
		}
	}
	return withStore(c, func(store *lists.Store) error {
		err := store.CreateList(c.Context, list, owner)
		if errors.Is(err, lists.ErrListExists) {
			return fmt.Errorf("list %s already exists (see it with: fanmail list show %s)", list, list)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "created list %s (bounces go to %s)\n", list, expander.BounceAddress(list))
		return nil
	})
}

// oneList returns the single LIST argument of a command.
func oneList(c *cli.Context, cmd string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s: give exactly one LIST, e.g. fanmail %s announce@lists.example.org", cmd, cmd)
	}
	return strings.TrimSpace(c.Args().First()), nil
}

// onList runs fn on the single LIST argument of the command cmd, with the
// store opened by open.
func onList(c *cli.Context, cmd string, open listOpener, fn func(*lists.Store, lists.List) error) error {
	list, err := oneList(c, cmd)
	if err != nil {
		return err
	}
	return open(c, list, fn)
}

func listDelete(c *cli.Context) error {
	return onList(c, "list delete", withList, func(store *lists.Store, l lists.List) error {
		if err := store.DeleteList(c.Context, l.Address); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "deleted list %s and its %s\n", l.Address, plural(l.Members, "member", "members"))
		return nil
	})
}

func listShow(c *cli.Context) error {
	return onList(c, "list show", readList, func(store *lists.Store, l lists.List) error {
		mods, err := store.Moderators(c.Context, l.Address)
		if err != nil {
			return err
		}
		held, err := store.Posts(c.Context, lists.PostFilter{List: l.Address})
		if err != nil {
			return err
		}
		vals, err := store.SettingValues(c.Context, l.Address)
		if err != nil {
			return err
		}
		owner := l.Owner
		if owner == "" {
			owner = "(none)"
		}
		w := tabwriter.NewWriter(c.App.Writer, 0, 0, 1, ' ', 0)
		fmt.Fprintf(w, "list:\t%s\n", l.Address)
		fmt.Fprintf(w, "owner:\t%s\n", owner)
		fmt.Fprintf(w, "created:\t%s\n", l.Created.Format(time.RFC3339))
		fmt.Fprintf(w, "members:\t%d\n", l.Members)
		fmt.Fprintf(w, "moderators:\t%d\n", len(mods))
		fmt.Fprintf(w, "held posts:\t%d\n", len(held))
		fmt.Fprintf(w, "bounces:\t%s\n", expander.BounceAddress(l.Address))
		if err := w.Flush(); err != nil {
			return err
		}
		return printSettings(c.App.Writer, vals)
	})
}

func listLs(c *cli.Context) error {
	if c.NArg() != 0 {
		return errors.New("list ls: takes no arguments")
	}
	err := readStore(c, func(store *lists.Store) error {
		all, err := store.Lists(c.Context)
		if err != nil {
			return err
		}
		if len(all) == 0 {
			return &emptyDataDir{}
		}
		w := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
		for _, l := range all {
			fmt.Fprintf(w, "%s\t%s\n", l.Address, plural(l.Members, "member", "members"))
		}
		return w.Flush()
	})
	// No lists is an answer, not a failure; the note names the directory.
	if e := (*emptyDataDir)(nil); errors.As(err, &e) {
		fmt.Fprintln(c.App.ErrWriter, e.Error())
		return nil
	}
	return err
}

func memberCommand() *cli.Command {
	members := memberRoster()
	fileFlag := &cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "read addresses from `FILE`, one per line (- for standard input)"}
	return &cli.Command{
		Name:  "member",
		Usage: "add, remove and list a list's members; see and decide requests made by mail",
		Subcommands: append([]*cli.Command{
			{
				Name:      "add",
				Usage:     "add members (all or nothing: one bad address and nothing is added)",
				ArgsUsage: "LIST [ADDR...]",
				Flags:     []cli.Flag{fileFlag},
				Action:    members.addAction,
			},
			{
				Name:      "rm",
				Usage:     "remove members (all or nothing)",
				ArgsUsage: "LIST [ADDR...]",
				Flags:     []cli.Flag{fileFlag},
				Action:    members.rmAction,
			},
			{Name: "ls", Usage: "print a list's members, one per line (--bouncing: those with bounces, with their state)", ArgsUsage: "LIST",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "bouncing", Usage: "only members with a bounce score or disabled delivery, with state and score"}},
				Action: func(c *cli.Context) error {
					if c.Bool("bouncing") {
						return memberLsBouncing(c)
					}
					return members.lsAction(c)
				}},
			{Name: "show", Usage: "show a member: delivery state, bounce score and the evidence of its last bounces", ArgsUsage: "LIST ADDR", Action: memberShow},
			{Name: "enable", Usage: "enable a member's delivery that bounces disabled, with a clean score", ArgsUsage: "LIST ADDR", Action: memberEnable},
		}, memberRequestCommands()...),
	}
}

// memberRoster is what the member commands change and list.
func memberRoster() roster {
	return roster{
		one: "member", many: "members",
		args: memberArgs,
		add: func(c *cli.Context, store *lists.Store, list string, addrs []string) (int, error) {
			return store.AddMembersProgress(c.Context, list, addrs, progress(c, "adding members"))
		},
		rm: func(c *cli.Context, store *lists.Store, list string, addrs []string) (int, error) {
			return store.RemoveMembers(c.Context, list, addrs)
		},
		ls: func(c *cli.Context, store *lists.Store, list string) ([]string, error) {
			return store.Members(c.Context, list)
		},
	}
}

// roster is one of the sets of addresses a list keeps, its members or
// its moderators: the add, rm and ls commands of both are the same over
// a different set.
type roster struct {
	one, many string // "member", "members"
	// args returns the LIST argument and the normalized addresses, or an
	// error naming every bad one (then nothing is applied).
	args    func(c *cli.Context, cmd string) (list string, addrs []string, err error)
	add, rm func(c *cli.Context, store *lists.Store, list string, addrs []string) (int, error)
	ls      func(c *cli.Context, store *lists.Store, list string) ([]string, error)
}

func (r roster) addAction(c *cli.Context) error {
	return r.change(c, "add", func(store *lists.Store, l lists.List, addrs []string, unique int) error {
		added, err := r.add(c, store, l.Address, addrs)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "added %s to %s (%d already present%s)\n",
			plural(added, r.one, r.many), l.Address, unique-added, dupNote(len(addrs)-unique))
		return nil
	})
}

func (r roster) rmAction(c *cli.Context) error {
	return r.change(c, "rm", func(store *lists.Store, l lists.List, addrs []string, unique int) error {
		removed, err := r.rm(c, store, l.Address, addrs)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "removed %s from %s (%s%s)\n",
			plural(removed, r.one, r.many), l.Address, r.notIn(unique-removed), dupNote(len(addrs)-unique))
		return nil
	})
}

// change reads the command's list and addresses and runs apply on them,
// with the number of distinct addresses.
func (r roster) change(c *cli.Context, sub string, apply func(store *lists.Store, l lists.List, addrs []string, unique int) error) error {
	list, addrs, err := r.args(c, r.one+" "+sub)
	if err != nil {
		return err
	}
	return withList(c, list, func(store *lists.Store, l lists.List) error {
		return apply(store, l, addrs, countUnique(addrs))
	})
}

func (r roster) lsAction(c *cli.Context) error {
	list, err := oneList(c, r.one+" ls")
	if err != nil {
		return err
	}
	return readStore(c, func(store *lists.Store) error {
		addrs, err := r.ls(c, store, list)
		if err != nil {
			return noList(list, err)
		}
		w := bufio.NewWriter(c.App.Writer)
		for _, a := range addrs {
			w.WriteString(a)
			w.WriteByte('\n')
		}
		return w.Flush()
	})
}

// notIn says how many of the addresses given were not in the roster.
func (r roster) notIn(n int) string {
	if n == 1 {
		return "1 was not a " + r.one
	}
	return fmt.Sprintf("%d were not %s", n, r.many)
}

// memberArgs returns the LIST argument and the normalized addresses from
// the other arguments and --file. Every bad address is reported, naming
// its argument or FILE:LINE, and then none is returned, so nothing is
// applied.
func memberArgs(c *cli.Context, cmd string) (list string, addrs []string, err error) {
	file, args := c.String("file"), c.Args().Slice()
	if len(args) == 0 || (len(args) == 1 && file == "") {
		return "", nil, fmt.Errorf("%s: give a LIST and addresses or --file FILE (- for standard input), e.g. fanmail %s announce@lists.example.org bob@example.com", cmd, cmd)
	}
	list = strings.TrimSpace(args[0])
	addrs, bad := normalizeArgs(args[1:], 2) // one error per bad argument or line
	if file != "" {
		fromFile, err := readMemberFile(c, file)
		var lines interface{ Unwrap() []error }
		switch {
		case errors.As(err, &lines):
			bad = append(bad, lines.Unwrap()...)
		case err != nil:
			return "", nil, fmt.Errorf("%s: %w", cmd, err)
		}
		addrs = append(addrs, fromFile...)
	}
	if err := badAddresses(cmd, bad); err != nil {
		return "", nil, err
	}
	return list, addrs, nil
}

// normalizeArgs normalizes addresses given as arguments, the first being
// argument number first; each bad one is an error naming it.
func normalizeArgs(args []string, first int) (addrs []string, bad []error) {
	for i, a := range args {
		n, err := address.Normalize(a)
		if err != nil {
			bad = append(bad, fmt.Errorf("argument %d %q: %w (fix the address or leave it out)", first+i, a, err))
			continue
		}
		addrs = append(addrs, n)
	}
	return addrs, bad
}

// badAddresses is the error of a command given bad addresses, naming
// every one, or nil when there are none.
func badAddresses(cmd string, bad []error) error {
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s, nothing applied:\n%w", cmd, plural(len(bad), "bad address", "bad addresses"), errors.Join(bad...))
}

// readMemberFile reads a member file, "-" being the app's standard input.
// Bad lines come back as one joined error of *lists.LineError.
func readMemberFile(c *cli.Context, file string) ([]string, error) {
	if file == "-" {
		return lists.ReadMemberFile(file, c.App.Reader)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return lists.ReadMemberFile(file, f)
}

// progress returns a progress reporter writing to stderr, or nil when
// stdout is not a terminal: scripts and pipes get the summary only. Small
// batches finish before anyone could read a counter, so they get none.
func progress(c *cli.Context, what string) func(done, total int) {
	if !isTerminal(c.App.Writer) {
		return nil
	}
	return func(done, total int) {
		if total < 10_000 {
			return
		}
		fmt.Fprintf(c.App.ErrWriter, "\r%s: %d/%d", what, done, total)
		if done == total {
			fmt.Fprintln(c.App.ErrWriter)
		}
	}
}

// isTerminal reports whether w is a terminal (a Cygwin one included).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

func countUnique(addrs []string) int {
	seen := make(map[string]struct{}, len(addrs))
	for _, a := range addrs {
		seen[a] = struct{}{}
	}
	return len(seen)
}

func dupNote(dups int) string {
	if dups == 0 {
		return ""
	}
	return ", " + plural(dups, "duplicate", "duplicates") + " in the input"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
