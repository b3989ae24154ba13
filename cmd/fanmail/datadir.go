package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"fanmail/config"
)

// readConfig is loadConfig for a command that only reads: it checks
// that the data directory exists, since such a command never creates
// one, and a missing one is almost always the wrong directory (fanmail
// run from elsewhere than the server, without --data-dir or --config).
func readConfig(c *cli.Context) (config.Config, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return cfg, err
	}
	return cfg, checkDataDir(cfg)
}

// checkDataDir reports a data directory that is missing or no directory.
func checkDataDir(cfg config.Config) error {
	switch fi, err := os.Stat(cfg.DataDir); {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("data directory %s does not exist (give the server's with --data-dir DIR or --config FILE)", absPath(cfg.DataDir))
	case err != nil:
		return fmt.Errorf("data directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("data directory %s is not a directory", absPath(cfg.DataDir))
	}
	return nil
}

// absPath is path made absolute for messages, or path itself if that
// fails.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}
