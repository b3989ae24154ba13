// Command fanmail is the mailing-list expander and distribution server.
// This package only wires the pipeline's packages together; the behaviour
// lives in ingress, expander, lists, queuegroups and delivery.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"fanmail/config"
	"fanmail/delivery/local"
)

func main() {
	if err := runApp(newApp(), os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "fanmail: %v\n", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "fanmail",
		Usage:   "mailing-list expander and distribution server",
		Version: readBuildInfo().String(),
		Description: "fanmail accepts posts to mailing lists over SMTP, expands each to the list's members " +
			"(lists in DATA_DIR/lists.db, aliases(5) files), spools them durably in queue groups and " +
			"delivers them with a shared MX cache, pipelining and connection reuse.\n\n" +
			"Options may follow the command and its arguments; \"--\" ends them. " +
			"Every key of the config file is optional; see contrib/fanmail.toml.example.\n\n" +
			"Signals to fanmail serve: SIGHUP reloads the aliases files and the TLS certificate; " +
			"SIGTERM and SIGINT stop it, after the SMTP sessions and the deliveries in progress " +
			"had a moment to finish; whatever is still queued is delivered after the next start. " +
			"The other commands reach a running server through DATA_DIR/control.sock.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "config `FILE` (TOML); every key is optional", EnvVars: []string{"FANMAIL_CONFIG"}},
			&cli.StringFlag{Name: "data-dir", Usage: "`DIR` holding lists.db and the queue (default ./fanmail-data)", EnvVars: []string{"FANMAIL_DATA_DIR"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "server log `FORMAT`: text (key=value) or json", EnvVars: []string{"FANMAIL_LOG_FORMAT"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "least severe server log `LEVEL` written: debug, info, warn or error", EnvVars: []string{"FANMAIL_LOG_LEVEL"}},
		},
		Commands: []*cli.Command{
			serveCommand(),
			listCommand(),
			memberCommand(),
			moderatorCommand(),
			modCommand(),
			queueCommand(),
			statusCommand(),
			nodeCommand(),
			configCommand(),
			aliasesCommand(),
			migrateCommand(),
			{
				// Not for operators: the child that appends to a /file
				// target as the program user (package delivery/local).
				Name: local.FileHelperCommand, Hidden: true, SkipFlagParsing: true,
				Action: func(c *cli.Context) error {
					return cli.Exit("", local.RunFileHelper(c.Args().Slice(), os.Stdin, os.Stdout))
				},
			},
			dkimCommand(),
			versionCommand(),
			manCommand(),
		},
		HideHelpCommand: true,
	}
}

// loadConfig builds the effective config: defaults, then the file named
// by --config, then command-line flags, then validation.
func loadConfig(c *cli.Context) (config.Config, error) {
	return config.Load(c.String("config"), func(cfg *config.Config) {
		if dir := c.String("data-dir"); dir != "" {
			cfg.DataDir = dir
		}
		if c.Command != nil && c.Command.Name == "serve" {
			if v := c.String("listen"); v != "" {
				cfg.Listen = v
			}
			if v := c.String("hostname"); v != "" {
				cfg.Hostname = v
			}
		}
	})
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "inspect configuration",
		Subcommands: []*cli.Command{{
			Name:      "check",
			Usage:     "validate a config file and print the effective configuration",
			ArgsUsage: "FILE",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return fmt.Errorf("config check: give exactly one FILE")
				}
				cfg, err := config.Load(c.Args().First())
				var problems []*config.Problem
				if err != nil && !config.Problems(err, &problems) {
					return err // unreadable or unparsable: one error
				}
				if len(problems) > 0 {
					// Every problem, one per line, each naming file, line and key.
					for _, p := range problems {
						fmt.Fprintln(c.App.ErrWriter, p)
					}
					return failed(c, "config check: "+plural(len(problems), "problem", "problems"))
				}
				for _, w := range cfg.Warnings() {
					fmt.Fprintln(c.App.ErrWriter, "warning: "+w)
				}
				fmt.Fprint(c.App.Writer, cfg.String(), cfg.SpoolSummary())
				return nil
			},
		}},
	}
}
