package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"fanmail/dkim"
)

func dkimCommand() *cli.Command {
	return &cli.Command{
		Name:  "dkim",
		Usage: "create and list the keys that sign outgoing mail (DKIM)",
		Subcommands: []*cli.Command{
			{
				Name:      "keygen",
				Usage:     "create a signing key for a domain and print the DNS TXT record to publish",
				ArgsUsage: "DOMAIN",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "selector", Usage: "`SELECTOR` naming the key in the DNS (default fmYYYYa: the year and the first free letter)"},
					&cli.StringFlag{Name: "algorithm", Value: "rsa", Usage: "`ALG`: rsa (2048 bits, verified everywhere) or ed25519 (RFC 8463)"},
					&cli.BoolFlag{Name: "force", Usage: "replace an existing key with the same selector"},
				},
				Action: dkimKeygen,
			},
			{Name: "ls", Usage: "list the keys, which of them sign, and their DNS records", Action: dkimLs},
		},
	}
}

func dkimKeygen(c *cli.Context) error {
	o := dkim.GenerateOptions{
		Selector:  c.String("selector"),
		Algorithm: dkim.Algorithm(c.String("algorithm")),
		Force:     c.Bool("force"),
		Now:       time.Now(),
	}
	args := c.Args().Slice()
	if len(args) != 1 {
		return errors.New("dkim keygen: give exactly one DOMAIN, e.g. fanmail dkim keygen lists.example.org --algorithm rsa")
	}
	o.Domain = args[0]
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	k, err := dkim.Generate(dkim.KeyDir(cfg.DataDir), o)
	if err != nil {
		return fmt.Errorf("dkim keygen: %w", err)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "created %s (%s)\n", k.File, describeKey(k))
	fmt.Fprintf(w, "fanmail signs mail from %s with it from its next start: publish this TXT record first.\n\n", k.Domain)
	fmt.Fprintln(w, k.Record().Zone())
	return nil
}

func dkimLs(c *cli.Context) error {
	if c.NArg() != 0 {
		return errors.New("dkim ls: takes no arguments")
	}
	cfg, err := readConfig(c)
	if err != nil {
		return err
	}
	dir := dkim.KeyDir(cfg.DataDir)
	kr, loadErr := dkim.LoadKeyring(dir, nil)
	keys := kr.Keys()
	if len(keys) == 0 && loadErr == nil {
		fmt.Fprintf(c.App.ErrWriter, "no DKIM keys yet in %s (create one with: fanmail dkim keygen DOMAIN)\n", absPath(dir))
		return nil
	}
	if len(keys) > 0 {
		tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DOMAIN\tSELECTOR\tALGORITHM\tSIGNS\tFILE")
		for _, k := range keys {
			signs := "no (an older key)"
			if kr.Signs(k) {
				signs = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Domain, k.Selector, describeKey(k), signs, k.File)
		}
		tw.Flush()
		for _, k := range keys {
			fmt.Fprintf(c.App.Writer, "\n%s\n", k.Record().Zone())
		}
	}
	if loadErr != nil {
		return fmt.Errorf("DKIM keys in %s:\n%w", dir, loadErr)
	}
	return nil
}

func describeKey(k *dkim.Key) string {
	if k.Algorithm == dkim.RSA {
		return fmt.Sprintf("rsa %d bits", k.Bits)
	}
	return string(k.Algorithm)
}
