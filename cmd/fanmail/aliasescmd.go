package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"

	"fanmail/aliases"
	"fanmail/config"
	"fanmail/expander"
	"fanmail/lists"
)

func aliasesCommand() *cli.Command {
	merge := &cli.BoolFlag{Name: "merge", Usage: "join the values of a name defined twice (sendmail -A) instead of keeping the last"}
	return &cli.Command{
		Name:  "aliases",
		Usage: "check aliases(5) files and show what an address expands to",
		Subcommands: []*cli.Command{
			{
				Name:      "check",
				Usage:     "validate aliases files like newaliases: the entry count on stdout, every problem on stderr",
				ArgsUsage: "FILE...",
				Flags:     []cli.Flag{merge},
				Action:    aliasesCheck,
			},
			{
				Name:      "expand",
				Usage:     "print the final targets of addresses like sendmail -bv (stdout), and every problem (stderr)",
				ArgsUsage: "ADDRESS...",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "aliases", Usage: "aliases `FILE` (repeatable; default: aliases.files of the config)"},
					&cli.StringSliceFlag{Name: "local-domain", Usage: "`DOMAIN` whose addresses are aliased, first = primary (repeatable; default: aliases.local_domains)"},
					merge,
					&cli.BoolFlag{Name: "allow-include-exec", Usage: "honour |program and /file targets in :include: files"},
					&cli.BoolFlag{Name: "explain", Usage: "also show the expansion tree, envelope senders and the envelope split"},
				},
				Action: aliasesExpand,
			},
		},
	}
}

func aliasesCheck(c *cli.Context) error {
	opts, files, cfg, err := aliasesLine(c, "aliases check", "aliases FILEs")
	if err != nil {
		return err
	}
	w := aliases.ClassW(cfg.Hostname, cfg.Aliases.LocalDomains...)
	table, probs := aliases.Load(aliases.LoadOptions{Merge: opts.bool("merge"), LocalDomains: w}, files...)
	for _, p := range probs {
		fmt.Fprintln(c.App.ErrWriter, p)
	}
	nerr := probs.Errors()
	fmt.Fprintf(c.App.Writer, "%s: %s, %s, %s\n", strings.Join(files, ", "),
		plural(table.Len(), "alias", "aliases"), plural(nerr, "error", "errors"), plural(len(probs)-nerr, "warning", "warnings"))
	if nerr > 0 {
		return failed(c, fmt.Sprintf("aliases check: %s (fix the lines named above)", plural(nerr, "error", "errors")))
	}
	return nil
}

// aliasesExpand prints on stdout what `sendmail -bv` prints, normalised:
// one target per line (a local mailbox by its bare name, an address as
// written, |program, /file), and on stderr every problem of the files
// and every expansion error, as "ERROR: SUBJECT: message" or
// "WARNING: FILE:LINE: message".
func aliasesExpand(c *cli.Context) error {
	opts, addrs, cfg, err := aliasesLine(c, "aliases expand", "ADDRESSes")
	if err != nil {
		return err
	}
	files := opts.strings("aliases")
	if len(files) == 0 {
		files = cfg.Aliases.Files
	}
	domains := opts.strings("local-domain")
	if len(domains) == 0 {
		domains = cfg.Aliases.LocalDomains
	}
	w := aliases.ClassW(cfg.Hostname, domains...)
	table, probs := aliases.Load(aliases.LoadOptions{Merge: opts.bool("merge") || cfg.Aliases.MergeDuplicates, LocalDomains: w}, files...)
	for _, p := range probs {
		fmt.Fprintln(c.App.ErrWriter, p)
	}
	x := &aliases.Expander{
		Table:            table,
		LocalDomains:     w,
		AllowIncludeExec: opts.bool("allow-include-exec") || cfg.Aliases.AllowIncludeExec,
	}
	// Lists are consulted only when a store exists: expand must not
	// create one as a side effect.
	if _, err := os.Stat(cfg.ListsDB()); err == nil {
		store, err := lists.Open(cfg.ListsDB())
		if err != nil {
			return err
		}
		defer store.Close()
		x.Lists = storeLists{store}
	}
	res, err := x.Expand(c.Context, addrs...)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(c.App.Writer) // one line per target: 50,000 writes otherwise
	for _, line := range res.Lines() {
		fmt.Fprintln(bw, line)
	}
	if opts.bool("explain") {
		router, err := expander.NewRouter(cfg.Routing())
		if err != nil {
			return err
		}
		expander.Explain(bw, res, router, cfg.Aliases.BounceAddress)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	for _, f := range res.Failures {
		fmt.Fprintln(c.App.ErrWriter, "ERROR: "+f.String())
	}
	if n := probs.Errors() + len(res.Failures); n > 0 {
		return failed(c, fmt.Sprintf("aliases expand: %s (see the ERROR lines)", plural(n, "error", "errors")))
	}
	return nil
}

// aliasesLine reads the line of the aliases command named cmd: its
// options, its arguments (one or more, called what in the error) and
// the config.
func aliasesLine(c *cli.Context, cmd, what string) (lateFlags, []string, config.Config, error) {
	opts, args, err := parseLate(c)
	if err != nil {
		return opts, nil, config.Config{}, fmt.Errorf("%s: %w", cmd, err)
	}
	if len(args) == 0 {
		return opts, nil, config.Config{}, fmt.Errorf("%s: give one or more %s", cmd, what)
	}
	cfg, err := loadConfig(c)
	return opts, args, cfg, err
}

// failed ends a command that found errors with exit status 1. The
// summary msg is printed only when stderr is a terminal: a script
// reading stderr gets the ERROR and WARNING lines alone.
func failed(c *cli.Context, msg string) error {
	if f, ok := c.App.ErrWriter.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return errors.New(msg)
	}
	return cli.Exit("", 1)
}

// lateFlags holds the options of a command given anywhere on its line.
type lateFlags struct {
	c       *cli.Context
	bools   map[string]bool
	strs    map[string][]string
	present map[string]bool
}

// parseLate returns the command's arguments with its options taken out
// wherever they are: urfave/cli stops reading options at the first
// argument, but "aliases expand staff --explain" is as natural as the
// other order. After "--" everything is an argument.
func parseLate(c *cli.Context) (lateFlags, []string, error) {
	l := lateFlags{c: c, bools: map[string]bool{}, strs: map[string][]string{}, present: map[string]bool{}}
	in := c.Args().Slice()
	var args []string
	for i := 0; i < len(in); i++ {
		arg := in[i]
		if arg == "--" {
			return l, append(args, in[i+1:]...), nil
		}
		if len(arg) < 2 || arg[0] != '-' {
			args = append(args, arg)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		switch f := lookupFlag(c.Command.Flags, name).(type) {
		case *cli.BoolFlag:
			v := true
			if hasValue {
				var err error
				if v, err = strconv.ParseBool(value); err != nil {
					return l, nil, fmt.Errorf("option %s: %q is not true or false", arg, value)
				}
			}
			l.bools[f.Name], l.present[f.Name] = v, true
		case *cli.StringSliceFlag:
			if !hasValue {
				if i+1 == len(in) {
					return l, nil, fmt.Errorf("option %s needs a value", arg)
				}
				i++
				value = in[i]
			}
			l.strs[f.Name] = append(l.strs[f.Name], value)
		default:
			return l, nil, fmt.Errorf("unknown option %s (put \"--\" before an address that starts with -)", arg)
		}
	}
	return l, args, nil
}

func lookupFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// bool is the option's value, wherever it was given (a late one wins).
func (l lateFlags) bool(name string) bool {
	if l.present[name] {
		return l.bools[name]
	}
	return l.c.Bool(name)
}

// strings is every value of a repeatable option, in order.
func (l lateFlags) strings(name string) []string {
	return append(l.c.StringSlice(name), l.strs[name]...)
}

// storeLists lets expansion reach lists in the SQLite store.
type storeLists struct{ s *lists.Store }

func (l storeLists) ListMembers(ctx context.Context, addr string) ([]string, bool, error) {
	if _, err := l.s.GetList(ctx, addr); errors.Is(err, lists.ErrNoList) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	}
	m, err := l.s.Members(ctx, addr)
	return m, err == nil, err
}
