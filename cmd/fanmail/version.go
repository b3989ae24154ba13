package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// buildInfo is what the binary knows about its own build, from
// debug.ReadBuildInfo: the module version ("(devel)" for a build from a
// work tree, vX.Y.Z for go install fanmail@vX.Y.Z), and the VCS
// revision, its time and whether the tree had local changes, which the
// go command stamps when it builds inside a git checkout (not with
// -buildvcs=false).
type buildInfo struct {
	Version   string
	Revision  string
	Time      string
	Modified  bool
	GoVersion string
}

func readBuildInfo() buildInfo {
	bi := buildInfo{Version: "(unknown)"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return bi
	}
	bi.GoVersion = info.GoVersion
	if info.Main.Version != "" {
		bi.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			bi.Revision = s.Value
		case "vcs.time":
			bi.Time = s.Value
		case "vcs.modified":
			bi.Modified = s.Value == "true"
		}
	}
	return bi
}

// String is the one-line form `fanmail --version` prints after
// "fanmail version ".
func (b buildInfo) String() string {
	parts := []string{b.Version}
	if b.Revision != "" {
		rev := b.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if b.Modified {
			rev += "+modified"
		}
		parts = append(parts, "revision "+rev)
	}
	if b.Time != "" {
		parts = append(parts, b.Time)
	}
	if b.GoVersion != "" {
		parts = append(parts, b.GoVersion)
	}
	return strings.Join(parts, ", ")
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, VCS revision and build time",
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return fmt.Errorf("version: takes no arguments")
			}
			b := readBuildInfo()
			w := c.App.Writer
			fmt.Fprintf(w, "fanmail %s\n", b.Version)
			rev, when := b.Revision, b.Time
			if rev == "" {
				rev = "unknown (built without VCS information, e.g. with -buildvcs=false)"
			} else if b.Modified {
				rev += " (with local changes)"
			}
			if when == "" {
				when = "unknown"
			}
			fmt.Fprintf(w, "revision: %s\ncommitted: %s\ngo: %s\n", rev, when, b.GoVersion)
			return nil
		},
	}
}
