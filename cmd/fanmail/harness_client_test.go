package main

// The harness's client side: what a test does to a running fanmail as
// an operator or a poster would, through the CLI and over SMTP, and the
// lists it makes that way.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// fanmailCLI runs a fanmail command (list, member …) with the given config.
func fanmailCLI(t testing.TB, cfg string, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(fanmailBinary(t), append([]string{"--config", cfg}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fanmail %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runBinary runs fanmail with args to completion (at most a minute) and
// returns what it printed on stdout and stderr together.
func runBinary(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, fanmailBinary(t), args...).CombinedOutput()
	return string(out), err
}

// mailFrom connects to the SMTP server at addr, says EHLO helo and
// MAIL FROM:<from>, and returns the client for the caller to close.
func mailFrom(t testing.TB, addr, helo, from string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello(helo); err != nil {
		c.Close()
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// transaction runs one SMTP transaction from helo. A refusal at RCPT or
// at the end of DATA comes back as its stage ("rcpt" or "data") and the
// server's error; anything else fails the test. Accepted, it returns the
// status text of the 250 (enhanced code first).
func transaction(t testing.TB, addr, helo, from, rcpt, msg string) (status, stage string, refused *smtp.SMTPError) {
	t.Helper()
	c := mailFrom(t, addr, helo, from)
	defer c.Close()
	refusal := func(stage string, err error) (string, string, *smtp.SMTPError) {
		if !errors.As(err, &refused) {
			t.Fatal(err)
		}
		return "", stage, refused
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return refusal("rcpt", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, msg); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return refusal("data", err)
	}
	c.Quit()
	return resp.StatusText, "data", nil
}

// postTo sends one message over SMTP and returns the queue ID from the 250.
func postTo(t testing.TB, addr, from, rcpt, msg string) string {
	t.Helper()
	status, stage, refused := transaction(t, addr, "poster.example.org", from, rcpt, msg)
	if refused != nil {
		t.Fatalf("%s refused: %v", stage, refused)
	}
	id, ok := strings.CutPrefix(status, "2.0.0 OK queued as ")
	if !ok {
		t.Fatalf("reply to DATA %q has no queue ID", status)
	}
	return id
}

// openList creates list through the CLI (with list create's further
// arguments) and sets posting=open: the tests that use it post as
// poster@example.org, who is no member, and are about delivery, not
// about who may post (policy_e2e_test.go is).
func openList(t testing.TB, cfg, list string, args ...string) {
	t.Helper()
	fanmailCLI(t, cfg, "", append([]string{"list", "create", list}, args...)...)
	fanmailCLI(t, cfg, "", "list", "set", list, "posting=open")
}

// openListWith is openList, then member add of members, read from
// standard input one a line.
func openListWith(t testing.TB, cfg, list string, members ...string) {
	t.Helper()
	openList(t, cfg, list)
	fanmailCLI(t, cfg, strings.Join(members, "\n")+"\n", "member", "add", list, "--file", "-")
}

// serveList makes e2eList with members (openListWith) and starts the
// server.
func serveList(t testing.TB, cfg string, members ...string) *proc {
	t.Helper()
	openListWith(t, cfg, e2eList, members...)
	return startFanmail(t, cfg)
}

// makeList creates list through the CLI with count[i] members at
// domains[i] and returns the members.
func makeList(t testing.TB, cfg, list string, domains []string, count []int) []string {
	t.Helper()
	openList(t, cfg, list)
	file, members := membersFile(t, domains, count)
	fanmailCLI(t, cfg, "", "member", "add", list, "--file", file)
	return members
}

// each returns n copies of v: a member count for every domain.
func each(n, v int) []int {
	counts := make([]int, n)
	for i := range counts {
		counts[i] = v
	}
	return counts
}

// membersFile writes a member file with count[i] addresses at domains[i].
func membersFile(t testing.TB, domains []string, count []int) (string, []string) {
	t.Helper()
	var b strings.Builder
	var all []string
	b.WriteString("# generated members\n")
	for i, d := range domains {
		for k := 0; k < count[i]; k++ {
			addr := fmt.Sprintf("member%04d@%s", k, d)
			all = append(all, addr)
			b.WriteString(addr + "\n")
		}
	}
	path := filepath.Join(t.TempDir(), "members.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, all
}

func testDomains(n int) []string {
	ds := make([]string, n)
	for i := range ds {
		ds[i] = fmt.Sprintf("d%02d.test", i)
	}
	return ds
}
