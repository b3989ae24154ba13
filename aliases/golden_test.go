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

var update = flag.Bool("update", false, "rewrite the .want and .err files of testdata/aliases")

const goldenDir = "../testdata/aliases"

// goldenHost is the host name the cases are expanded on, as sendmail.sh
// runs sendmail; with local domain example.org it makes class w.
const goldenHost = "mail.example.org"

// header returns the values of the "# key: value" lines a golden case
// starts with.
func header(data, key string) []string {
	var out []string
	for _, line := range strings.Split(data, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "# "+key+": "); ok {
			out = append(out, v)
		}
	}
	return out
}

func goldenCases(t *testing.T) []string {
	ins, _ := filepath.Glob(filepath.Join(goldenDir, "[0-9][0-9]-*.in"))
	if len(ins) == 0 {
		t.Fatal("no golden cases")
	}
	return ins
}

// TestGolden loads each NN-name.in, expands the addresses named on its
// "# expand:" line and compares what `fanmail aliases expand` would print
// with NN-name.want (stdout) and NN-name.err (stderr).
func TestGolden(t *testing.T) {
	for _, in := range goldenCases(t) {
		name := strings.TrimSuffix(filepath.Base(in), ".in")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			stdout, stderr := goldenRun(t, in, string(data))
			base := strings.TrimSuffix(in, ".in")
			compareGolden(t, base+".want", stdout)
			compareGolden(t, base+".err", stderr)
		})
	}
}

// compareGolden compares lines with file (a missing file is empty), or
// rewrites it with -update.
func compareGolden(t *testing.T, file string, lines []string) {
	t.Helper()
	got := strings.Join(lines, "\n")
	if got != "" {
		got += "\n"
	}
	if *update {
		if got == "" {
			os.Remove(file)
		} else if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := os.ReadFile(file)
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", filepath.Base(file), diff)
	}
}

// goldenRun returns the stdout and stderr lines of the case, with the
// directory of the golden files left out of paths.
func goldenRun(t *testing.T, in, data string) (stdout, stderr []string) {
	t.Helper()
	w := ClassW(goldenHost, "example.org")
	opts := LoadOptions{Merge: len(header(data, "options")) > 0 && strings.Contains(header(data, "options")[0], "merge"), LocalDomains: w}
	table, probs := Load(opts, in)
	for _, p := range probs {
		stderr = append(stderr, p.String())
	}
	x := &Expander{Table: table, LocalDomains: w}
	addrs := strings.Fields(header(data, "expand")[0])
	res, err := x.Expand(context.Background(), addrs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Failures {
		stderr = append(stderr, "ERROR: "+f.String())
	}
	for i := range stderr {
		stderr[i] = strings.ReplaceAll(stderr[i], goldenDir+"/", "")
	}
	return res.Lines(), stderr
}

// TestGoldenMatchesSendmail checks each case against what the real
// sendmail printed for it (NN-name.sendmail, made by sendmail.sh): the
// same set of targets once normalised (see sendmailTarget), and an ERROR
// line for each address sendmail reports, and the other way round; less
// what the case's "# not-sendmail:" lines name as deliberate differences.
func TestGoldenMatchesSendmail(t *testing.T) {
	for _, in := range goldenCases(t) {
		name := strings.TrimSuffix(filepath.Base(in), ".in")
		t.Run(name, func(t *testing.T) {
			sm, err := os.ReadFile(strings.TrimSuffix(in, ".in") + ".sendmail")
			if err != nil {
				t.Fatal("no .sendmail output: run sendmail.sh (see testdata/aliases/README.md)")
			}
			data, _ := os.ReadFile(in)
			skip := map[string]bool{}
			for _, v := range header(string(data), "not-sendmail") {
				skip[strings.Fields(v)[0]] = true
			}
			stdout, stderr := goldenRun(t, in, string(data))
			want := map[string]bool{}
			var smErrors []smError
			for _, line := range strings.Split(strings.TrimSuffix(string(sm), "\n"), "\n") {
				if v, ok := sendmailTarget(line); ok {
					if !skip[v] {
						want[v] = true
					}
				} else if e := parseSMError(line); !skip[e.subject] {
					smErrors = append(smErrors, e)
				}
			}
			got := map[string]bool{}
			for _, l := range stdout {
				got[l] = true
			}
			if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
				t.Errorf("targets differ from sendmail -bv (-sendmail +fanmail):\n%s", diff)
			}
			for _, e := range smErrors {
				if !anyLine(stderr, func(l string) bool { return e.matches(l) }) {
					t.Errorf("sendmail reports %q; fanmail prints no ERROR for it:\n%s", e.line, strings.Join(stderr, "\n"))
				}
			}
			for _, l := range stderr {
				if !strings.HasPrefix(l, "ERROR: ") || strings.HasPrefix(l, "ERROR: "+name+".in:") {
					continue // a load problem: sendmail reports those at newaliases time
				}
				if subject, _, _ := strings.Cut(strings.TrimPrefix(l, "ERROR: "), ": "); skip[subject] {
					continue
				}
				if !anyError(smErrors, l) {
					t.Errorf("fanmail prints %q; sendmail -bv reports nothing like it", l)
				}
			}
		})
	}
}

// smError is a line of `sendmail -bv` that is no target: "ADDRESS...
// message", or a bare message.
type smError struct {
	line, subject, msg string
}

func parseSMError(line string) smError {
	if subject, msg, ok := strings.Cut(line, "... "); ok {
		return smError{line, subject, msg}
	}
	return smError{line: line, msg: line}
}

// matches reports whether the fanmail diagnostic l is about e: it names
// e's address, or, for a bare sendmail message, says the same thing.
func (e smError) matches(l string) bool {
	if e.subject != "" {
		return strings.Contains(l, e.subject)
	}
	return strings.Contains(strings.ToLower(l), strings.ToLower(e.msg))
}

func anyError(es []smError, l string) bool {
	_, rest, _ := strings.Cut(l, ": ")
	subject, msg, _ := strings.Cut(rest, ": ")
	for _, e := range es {
		if e.subject != "" && (e.subject == subject || strings.Contains(e.subject, subject)) ||
			e.subject == "" && strings.HasPrefix(strings.ToLower(msg), strings.ToLower(e.msg)) {
			return true
		}
	}
	return false
}

func anyLine(lines []string, f func(string) bool) bool {
	for _, l := range lines {
		if f(l) {
			return true
		}
	}
	return false
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sendmailTarget turns a "deliverable" line of `sendmail -bv` into the
// target fanmail prints for it: the local mailer's user bare (without
// sendmail's \ mark, +detail from the host field), an SMTP address as
// written, a program or file unquoted.
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
		user = strings.TrimPrefix(user, `\`)
		if h, ok := strings.CutPrefix(rest[len(mailer):i], ", host "); ok {
			user += "+" + h
		}
	case "prog", "*file*":
		if strings.HasPrefix(user, `"`) {
			user = unescape(user[1 : len(user)-1])
		}
	}
	return user, true
}
