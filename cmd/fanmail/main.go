// Command fanmail is the mailing-list expander and distribution server.
// This package only wires the pipeline's packages together; the behaviour
// lives in ingress, expander, lists, queuegroups and delivery.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"fanmail/config"
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
			queueCommand(),
			configCommand(),
			aliasesCommand(),
			dkimCommand(),
		},
		HideHelpCommand: true,
	}
}

// loadConfig builds the effective config: defaults, then the file named by
// --config, then command-line flags, then validation.
func loadConfig(c *cli.Context) (config.Config, error) {
	cfg := config.Default()
	if path := c.String("config"); path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return cfg, err
		}
	}
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
	return cfg, cfg.Validate()
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
