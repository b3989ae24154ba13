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
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "fanmail: %v\n", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "fanmail",
		Usage: "mailing-list expander and distribution server",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "config `FILE` (TOML); every key is optional", EnvVars: []string{"FANMAIL_CONFIG"}},
			&cli.StringFlag{Name: "data-dir", Usage: "`DIR` holding lists.db and the queue (default ./fanmail-data)", EnvVars: []string{"FANMAIL_DATA_DIR"}},
		},
		Commands: []*cli.Command{
			serveCommand(),
			listCommand(),
			memberCommand(),
			moderatorCommand(),
			modCommand(),
			queueCommand(),
			configCommand(),
			aliasesCommand(),
			{
				// Not for operators: the child that appends to a /file
				// target as the program user (package delivery/local).
				Name: local.FileHelperCommand, Hidden: true, SkipFlagParsing: true,
				Action: func(c *cli.Context) error {
					return cli.Exit("", local.RunFileHelper(c.Args().Slice(), os.Stdin, os.Stdout))
				},
			},
			dkimCommand(),
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
				if err != nil {
					return err
				}
				fmt.Fprint(c.App.Writer, cfg.String(), cfg.SpoolSummary())
				return nil
			},
		}},
	}
}
