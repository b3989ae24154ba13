package bounces

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"fanmail/dsn"
)

var update = flag.Bool("update", false, "rewrite the .want files of testdata/bounces (keeping their # comments)")

const goldenDir = "../testdata/bounces"

// samples returns the golden samples, NN-name.eml.
func samples(t testing.TB) []string {
	t.Helper()
	emls, _ := filepath.Glob(filepath.Join(goldenDir, "[0-9][0-9]-*.eml"))
	if len(emls) == 0 {
		t.Fatal("no samples in " + goldenDir)
	}
	return emls
}

// describe renders a report in the .want format: the format, the
// reporting MTA, then one "recipient" line per recipient with its
// details indented below it. Evidence is checked separately.
func describe(r Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "format %s\n", orNone(string(r.Format)))
	if r.ReportingMTA != "" {
		fmt.Fprintf(&b, "reporting-mta %s\n", r.ReportingMTA)
	}
	if r.Truncated {
		b.WriteString("truncated\n")
	}
	for _, rc := range r.Recipients {
		fmt.Fprintf(&b, "recipient %s %s %s %s\n", rc.Address, rc.Action, rc.Status, rc.Severity)
		if rc.FinalRecipient != "" {
			fmt.Fprintf(&b, "  final %s\n", rc.FinalRecipient)
		}
		if rc.RemoteMTA != "" {
			fmt.Fprintf(&b, "  remote %s\n", rc.RemoteMTA)
		}
		if rc.Diagnostic != "" {
			fmt.Fprintf(&b, "  diagnostic %s\n", rc.Diagnostic)
		}
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// splitComments separates a .want file's leading "#" lines (what the
// sample is and where its shape comes from) from the expectation.
func splitComments(s string) (comments, body string) {
	for strings.HasPrefix(s, "#") {
		line, rest, _ := strings.Cut(s, "\n")
		comments += line + "\n"
		s = rest
	}
	return comments, s
}

// TestGolden parses every sample and compares the report with its
// sidecar NN-name.want.
func TestGolden(t *testing.T) {
	for _, eml := range samples(t) {
		name := strings.TrimSuffix(filepath.Base(eml), ".eml")
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(eml)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rep, err := Parse(f)
			if err != nil {
				t.Fatal(err)
			}
			got := describe(rep)
			wantFile := strings.TrimSuffix(eml, ".eml") + ".want"
			old, err := os.ReadFile(wantFile)
			if err != nil && !*update {
				t.Fatal(err)
			}
			comments, want := splitComments(string(old))
			if *update {
				if err := os.WriteFile(wantFile, []byte(comments+got), 0o644); err != nil {
					t.Fatal(err)
				}
				want = got
			}
			if comments == "" {
				t.Errorf("%s has no # line saying what the sample is", wantFile)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", name, diff)
			}
			for _, rc := range rep.Recipients {
				checkRecipient(t, rc)
			}
		})
	}
}

// checkRecipient checks what every recipient of every report must
// satisfy, whatever the input.
func checkRecipient(t *testing.T, rc Recipient) {
	t.Helper()
	if back, err := normalize(rc.Address); err != nil || back != rc.Address {
		t.Errorf("address %q is not in normal form (%q, %v)", rc.Address, back, err)
	}
	if rc.Action != dsn.Failed && rc.Action != dsn.Delayed {
		t.Errorf("%s: action %q", rc.Address, rc.Action)
	}
	if rc.Severity != Hard && rc.Severity != Soft {
		t.Errorf("%s: severity %q", rc.Address, rc.Severity)
	}
	if rc.Action == dsn.Delayed && rc.Severity == Hard {
		t.Errorf("%s: a delay classified hard", rc.Address)
	}
	if !validStatus(rc.Status) {
		t.Errorf("%s: status %q", rc.Address, rc.Status)
	}
	if rc.Evidence == "" {
		t.Errorf("%s: no evidence", rc.Address)
	}
	for field, v := range map[string]string{"evidence": rc.Evidence, "diagnostic": rc.Diagnostic, "remote": rc.RemoteMTA} {
		if !utf8.ValidString(v) {
			t.Errorf("%s: %s is not UTF-8: %q", rc.Address, field, v)
		}
	}
	if len(rc.Evidence) > maxEvidence || len(rc.Diagnostic) > maxDiagnostic || len(rc.RemoteMTA) > maxHostName {
		t.Errorf("%s: a field over its bound: evidence %d, diagnostic %d, remote %d",
			rc.Address, len(rc.Evidence), len(rc.Diagnostic), len(rc.RemoteMTA))
	}
}
