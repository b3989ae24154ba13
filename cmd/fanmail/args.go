package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// runApp runs app on a command line whose options may stand anywhere:
// urfave/cli v2 reads a command's options only between its name and its
// first argument, and the global ones only before the command, yet
// "fanmail serve --data-dir D", "fanmail queue --data-dir D --json" and
// "fanmail member add LIST --file F" are as natural as the other order.
// So the line is first put in the order urfave/cli reads, by
// reorderArgs, and an option no command on it defines is an error before
// anything runs, never taken for an address.
func runApp(app *cli.App, args []string) error {
	ordered, err := reorderArgs(app, args)
	if err != nil {
		return err
	}
	return app.Run(ordered)
}

// reorderArgs returns args (args[0] being the program) with the global
// options first, then each command name followed by its own options,
// then the positional arguments, after "--" when one of them starts
// with "-" (so an address such as "-x@example.org" given after "--"
// stays an argument). An option belongs to the innermost command on the
// line that defines it, else to the app; one nobody defines is an error
// naming the command. A value is the next argument or follows "=". A
// command that parses its own arguments (SkipFlagParsing) gets the rest
// of the line untouched, and so does a first argument naming no command,
// which urfave/cli then reports.
func reorderArgs(app *cli.App, args []string) ([]string, error) {
	if len(args) == 0 {
		return args, nil
	}
	type level struct {
		cmd   *cli.Command // nil for the app itself
		flags []string
	}
	levels := []*level{{}}
	var positional []string
	subcommands := app.Commands
	var path []string // the command names so far, for errors
	where := func() string {
		if len(path) == 0 {
			return app.Name
		}
		return strings.Join(path, " ")
	}

	for i := 1; i < len(args); i++ {
		arg := args[i]
		cur := levels[len(levels)-1]
		if cur.cmd != nil && cur.cmd.SkipFlagParsing {
			positional = append(positional, args[i:]...)
			break
		}
		if arg == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if len(arg) > 1 && arg[0] == '-' {
			name, _, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			var owner *level
			var f cli.Flag
			for k := len(levels) - 1; k >= 0 && f == nil; k-- {
				if f = findFlag(levels[k].cmd, app, name); f != nil {
					owner = levels[k]
				}
			}
			if f == nil {
				return nil, fmt.Errorf("%s: unknown option %s (put \"--\" before an argument that starts with -; see %s --help)",
					where(), arg, strings.Join(append([]string{app.Name}, path...), " "))
			}
			owner.flags = append(owner.flags, arg)
			if tv, ok := f.(interface{ TakesValue() bool }); ok && tv.TakesValue() && !hasValue {
				if i+1 == len(args) {
					return nil, fmt.Errorf("%s: option %s needs a value", where(), arg)
				}
				i++
				owner.flags = append(owner.flags, args[i])
			}
			continue
		}
		if len(positional) == 0 {
			if sub := findCommand(subcommands, arg); sub != nil {
				levels = append(levels, &level{cmd: sub})
				subcommands = sub.Subcommands
				path = append(path, sub.Name)
				continue
			}
			if len(levels) == 1 {
				// Not a command: urfave/cli says so.
				positional = append(positional, args[i:]...)
				break
			}
		}
		positional = append(positional, arg)
	}

	out := []string{args[0]}
	for _, l := range levels {
		if l.cmd != nil {
			out = append(out, l.cmd.Name)
		}
		out = append(out, l.flags...)
	}
	last := levels[len(levels)-1].cmd
	for _, p := range positional {
		if last != nil && !last.SkipFlagParsing && strings.HasPrefix(p, "-") {
			out = append(out, "--")
			break
		}
	}
	return append(out, positional...), nil
}

// findFlag returns the option called name of cmd (of the app when cmd
// is nil), including the help and version options urfave/cli adds.
func findFlag(cmd *cli.Command, app *cli.App, name string) cli.Flag {
	flags := app.Flags
	if cmd != nil {
		flags = cmd.Flags
	}
	if name == "help" || name == "h" {
		return cli.HelpFlag
	}
	if cmd == nil && !app.HideVersion && app.Version != "" && (name == "version" || name == "v") {
		return cli.VersionFlag
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
