package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestOptionsRejected(t *testing.T) {
	valid := func() options {
		return options{workload: "fanout", members: 10, domains: 2, size: 1000, messages: 1, posts: 1,
			dist: "uniform", dnsAddr: "127.0.0.1:0", timeout: time.Minute, settle: time.Second}
	}
	tests := []struct {
		name string
		edit func(o *options)
		want string
	}{
		{"no members", func(o *options) { o.members = 0 }, "must be positive"},
		{"tiny message", func(o *options) { o.size = 50 }, "--size at least 200"},
		{"endless timeout", func(o *options) { o.timeout = 3 * time.Hour }, "--timeout"},
		{"temp-fail of one", func(o *options) { o.tempFail = 1 }, "--temp-fail"},
		{"DNS off loopback", func(o *options) { o.dnsAddr = "0.0.0.0:53" }, "--dns"},
		{"target off loopback", func(o *options) { o.target = "192.0.2.1:25" }, "--target"},
		{"aliases without target", func(o *options) { o.aliases = "/tmp/a" }, "go with --target"},
		{"direct to fanmail", func(o *options) { o.workload, o.direct = "mass", true }, "never relays"},
		{"list settings for another MTA", func(o *options) { o.target, o.listSet = "127.0.0.1:25", []string{"footer=x"} }, "--list-set and --dkim"},
		{"DKIM keys for another MTA", func(o *options) { o.target, o.dkim = "127.0.0.1:25", []string{"rsa"} }, "--list-set and --dkim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.edit(&o)
			err := o.defaults()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("defaults() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	o := valid()
	if err := o.defaults(); err != nil || o.sinks != 2 || o.clients != 1 {
		t.Errorf("valid options: err %v, sinks %d, clients %d; want nil, 2, 1", err, o.sinks, o.clients)
	}
}

func TestWriteAliases(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "aliases")
	err := writeAliases(path, []list{{addr: "bench@" + listDomain, members: []string{"u0@d0.bench.test", "u1@d1.bench.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := "# Written by fanmail-bench; run newaliases (or postalias) after each change.\n" +
		"bench: :include:" + filepath.Join(dir, "bench.members") + "\nowner-bench: postmaster\n"
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("aliases (-want +got):\n%s", diff)
	}
	members, _ := os.ReadFile(filepath.Join(dir, "bench.members"))
	if diff := cmp.Diff("u0@d0.bench.test\nu1@d1.bench.test\n", string(members)); diff != "" {
		t.Errorf("members file (-want +got):\n%s", diff)
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine([]string{"fanout", "--prepare-cmd", "postalias /etc/a", "--x", "it's"})
	want := `fanmail-bench fanout --prepare-cmd 'postalias /etc/a' --x 'it'\''s'`
	if got != want {
		t.Errorf("commandLine = %s, want %s", got, want)
	}
}
