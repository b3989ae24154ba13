package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// manCommand prints the man page generated from the command definitions
// (urfave/cli renders them with go-md2man). `scripts/tasks.sh man`
// writes it to contrib/fanmail.8, and a test keeps that file current.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the fanmail(8) man page",
		Hidden: true,
		Action: func(c *cli.Context) error {
			page, err := manPage(c.App)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
}

// manPage renders app's man page, section 8 (a system daemon).
func manPage(app *cli.App) (string, error) {
	page, err := app.ToManWithSection(8)
	if err != nil {
		return "", fmt.Errorf("man page: %w", err)
	}
	return page, nil
}
