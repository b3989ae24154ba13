package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

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
	files, cfg, err := aliasesLine(c, "aliases check", "aliases FILEs")
	if err != nil {
		return err
	}
	w := aliases.ClassW(cfg.Hostname, cfg.Aliases.LocalDomains...)
	table, probs := aliases.Load(aliases.LoadOptions{Merge: c.Bool("merge"), LocalDomains: w}, files...)
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
	addrs, cfg, err := aliasesLine(c, "aliases expand", "ADDRESSes")
	if err != nil {
		return err
	}
	files := c.StringSlice("aliases")
	if len(files) == 0 {
		files = cfg.Aliases.Files
	}
	domains := c.StringSlice("local-domain")
	if len(domains) == 0 {
		domains = cfg.Aliases.LocalDomains
	}
	w := aliases.ClassW(cfg.Hostname, domains...)
	table, probs := aliases.Load(aliases.LoadOptions{Merge: c.Bool("merge") || cfg.Aliases.MergeDuplicates, LocalDomains: w}, files...)
	for _, p := range probs {
		fmt.Fprintln(c.App.ErrWriter, p)
	}
	x := &aliases.Expander{
		Table:            table,
		LocalDomains:     w,
		AllowIncludeExec: c.Bool("allow-include-exec") || cfg.Aliases.AllowIncludeExec,
	}
	// Lists are consulted only when a store exists: expand must not
	// create one as a side effect.
	file, sqlite := lists.SQLiteFile(cfg.ListsDB())
	if _, err := os.Stat(file); err == nil || !sqlite {
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
	if c.Bool("explain") {
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
// arguments (one or more, called what in the error) and the config.
func aliasesLine(c *cli.Context, cmd, what string) ([]string, config.Config, error) {
	args := c.Args().Slice()
	if len(args) == 0 {
		return nil, config.Config{}, fmt.Errorf("%s: give one or more %s", cmd, what)
	}
	cfg, err := loadConfig(c)
	return args, cfg, err
}

// failed ends a command that found errors with exit status 1. The
// summary msg is printed only when stderr is a terminal: a script
// reading stderr gets the ERROR and WARNING lines alone.
func failed(c *cli.Context, msg string) error {
	if isTerminal(c.App.ErrWriter) {
		return errors.New(msg)
	}
	return cli.Exit("", 1)
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
