package aliases

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the .want files of testdata/aliases")

const goldenDir = "../testdata/aliases"

// header reads the "# key: value" lines a golden case starts with.
func header(data, key string) string {
	for _, line := range strings.Split(data, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "# "+key+": "); ok {
			return v
		}
	}
	return ""
}

// TestGolden loads each NN-name.in, expands the addresses named on its
// "# expand:" line and compares the load problems and the expansion with
// NN-name.want.
func TestGolden(t *testing.T) {
	ins, _ := filepath.Glob(filepath.Join(goldenDir, "[0-9][0-9]-*.in"))
	if len(ins) == 0 {
		t.Fatal("no golden cases")
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(goldenRun(t, in, string(data)), "\n") + "\n"
			wantFile := strings.TrimSuffix(in, ".in") + ".want"
			if *update {
				if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", name, diff)
			}
		})
	}
}

func goldenRun(t *testing.T, in, data string) []string {
	t.Helper()
	opts := LoadOptions{Merge: strings.Contains(header(data, "options"), "merge")}
	table, probs := Load(opts, in)
	var lines []string
	for _, p := range probs {
		lines = append(lines, p.String())
	}
	x := &Expander{Table: table, LocalDomains: []string{"example.org", "localhost"}}
	res, err := x.Expand(context.Background(), strings.Fields(header(data, "expand"))...)
	if err != nil {
		t.Fatal(err)
	}
	return append(lines, res.Lines()...)
}

// TestGoldenMatchesSendmail checks each case's targets against what the
// real sendmail printed for it (NN-name.sendmail, made by sendmail.sh):
// the same set of mailboxes, programs and files, less the targets the
// case's "# not-sendmail:" line names as deliberate differences.
func TestGoldenMatchesSendmail(t *testing.T) {
	ins, _ := filepath.Glob(filepath.Join(goldenDir, "[0-9][0-9]-*.in"))
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in")
		t.Run(name, func(t *testing.T) {
			sm, err := os.ReadFile(strings.TrimSuffix(in, ".in") + ".sendmail")
			if err != nil {
				t.Skip("no .sendmail output for this case")
			}
			data, _ := os.ReadFile(in)
			skip := strings.Fields(header(string(data), "not-sendmail"))
			var want, got []string
			for _, line := range strings.Split(string(sm), "\n") {
				if v, ok := sendmailTarget(line); ok && (len(skip) == 0 || v != skip[0]) {
					want = append(want, v)
				}
			}
			for _, line := range goldenRun(t, in, string(data)) {
				if !strings.HasPrefix(line, "ERROR: ") && !strings.HasPrefix(line, goldenDir) {
					got = append(got, strings.ToLower(line))
				}
			}
			sort.Strings(want)
			sort.Strings(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("targets differ from sendmail -bv (-sendmail +fanmail):\n%s", diff)
			}
		})
	}
}

// sendmailTarget turns a `sendmail -bv` line into the target fanmail
// prints for it: local users qualified with the primary domain.
func sendmailTarget(line string) (string, bool) {
	_, rest, ok := strings.Cut(line, "... deliverable: mailer ")
	if !ok {
		return "", false
	}
	mailer, _, _ := strings.Cut(rest, ",")
	i := strings.LastIndex(rest, ", user ")
	user := rest[i+len(", user "):]
	switch mailer {
	case "local":
		user = strings.Trim(strings.TrimPrefix(user, `\`), `"`)
		if strings.Contains(user, " ") {
			user = `"` + user + `"`
		}
		user += "@example.org"
	case "prog", "*file*":
		user = strings.Trim(user, `"`)
	}
	return strings.ToLower(user), true
}
