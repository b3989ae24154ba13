package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"fanmail/lists"
)

// settingsUsage is the help text of list set: every key and what it takes.
func settingsUsage() string {
	var b strings.Builder
	b.WriteString("change a list's settings, all or none (KEY= resets a text setting); the keys:")
	for _, k := range lists.SettingKeys() {
		b.WriteString(" " + k)
	}
	return b.String()
}

func listSetCommand() *cli.Command {
	return &cli.Command{
		Name:      "set",
		Usage:     settingsUsage(),
		ArgsUsage: "LIST KEY=VALUE...",
		Action:    listSet,
	}
}

// listSet changes settings: every KEY=VALUE is checked before the store
// is opened, and every bad one is reported; then all are applied in one
// transaction.
func listSet(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) < 2 {
		return errors.New("list set: give a LIST and at least one KEY=VALUE, e.g. fanmail list set announce@lists.example.org posting=open")
	}
	list := strings.TrimSpace(args[0])
	var kv [][2]string
	var bad []error
	for _, a := range args[1:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			bad = append(bad, fmt.Errorf("%q is not KEY=VALUE (the keys are %s)", a, strings.Join(lists.SettingKeys(), ", ")))
			continue
		}
		k = strings.TrimSpace(k)
		if err := lists.CheckSetting(k, v); err != nil {
			// Without the "bad setting: " prefix: the summary line says it.
			bad = append(bad, errors.New(strings.TrimPrefix(err.Error(), lists.ErrBadSetting.Error()+": ")))
			continue
		}
		kv = append(kv, [2]string{k, v})
	}
	if len(bad) > 0 {
		return fmt.Errorf("list set: %s, nothing applied:\n%w", plural(len(bad), "bad setting", "bad settings"), errors.Join(bad...))
	}
	return withList(c, list, func(store *lists.Store, l lists.List) error {
		if err := store.SetSettings(c.Context, l.Address, kv); err != nil {
			return err
		}
		for _, p := range kv {
			fmt.Fprintf(c.App.Writer, "%s: %s = %s\n", l.Address, p[0], showValue(p[0], p[1]))
		}
		return nil
	})
}

// showValue prints a setting's value: free text quoted, so an empty or
// multi-line value is visible, choices and numbers as they are.
func showValue(key, v string) string {
	switch key {
	case "subject_prefix", "footer", "archive_url":
		return strconv.Quote(v)
	}
	return v
}

// printSettings writes every setting of a list with its value and
// whether it is the default.
func printSettings(w io.Writer, vals []lists.SettingValue) error {
	fmt.Fprintln(w, "settings:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range vals {
		note := "(set)"
		if v.Default {
			note = "(default)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Key, showValue(v.Key, v.Value), note)
	}
	return tw.Flush()
}
