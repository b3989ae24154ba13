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
				Usage:     "validate aliases files like newaliases: print every problem and the entry count",
				ArgsUsage: "FILE...",
				Flags:     []cli.Flag{merge},
				Action:    aliasesCheck,
			},
			{
				Name:      "expand",
				Usage:     "print the final targets of addresses, like sendmail -bv",
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
	if c.NArg() == 0 {
		return fmt.Errorf("aliases check: give one or more aliases FILEs")
	}
	table, probs := aliases.Load(aliases.LoadOptions{Merge: c.Bool("merge")}, c.Args().Slice()...)
	w := c.App.Writer
	for _, p := range probs {
		fmt.Fprintln(w, p)
	}
	nerr := probs.Errors()
	fmt.Fprintf(w, "%s: %s, %s, %s\n", strings.Join(c.Args().Slice(), ", "),
		plural(table.Len(), "alias", "aliases"), plural(nerr, "error", "errors"), plural(len(probs)-nerr, "warning", "warnings"))
	if nerr > 0 {
		return fmt.Errorf("aliases check: %s (fix the lines named above)", plural(nerr, "error", "errors"))
	}
	return nil
}

func aliasesExpand(c *cli.Context) error {
	if c.NArg() == 0 {
		return fmt.Errorf("aliases expand: give one or more ADDRESSes")
	}
	cfg, err := loadConfig(c)
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
	table, probs := aliases.Load(aliases.LoadOptions{Merge: c.Bool("merge") || cfg.Aliases.MergeDuplicates}, files...)
	bw := bufio.NewWriter(c.App.Writer) // one line per target: 50,000 writes otherwise
	defer bw.Flush()
	w := bw
	for _, p := range probs {
		if p.Severity == aliases.Error {
			fmt.Fprintf(w, "ERROR: %s: %s\n", p.Pos, p.Msg)
		} else {
			fmt.Fprintln(c.App.ErrWriter, p)
		}
	}
	x := &aliases.Expander{
		Table:            table,
		LocalDomains:     domains,
		AllowIncludeExec: c.Bool("allow-include-exec") || cfg.Aliases.AllowIncludeExec,
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
	res, err := x.Expand(c.Context, c.Args().Slice()...)
	if err != nil {
		return err
	}
	for _, line := range res.Lines() {
		fmt.Fprintln(w, line)
	}
	if c.Bool("explain") {
		router, err := expander.NewRouter(cfg.Routing())
		if err != nil {
			return err
		}
		expander.Explain(w, res, router)
	}
	if n := probs.Errors() + len(res.Failures); n > 0 {
		return fmt.Errorf("aliases expand: %s (see the ERROR lines)", plural(n, "error", "errors"))
	}
	return nil
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
