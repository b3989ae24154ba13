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
		{"list settings for another MTA", func(o *options) { o.target, o.listSet = "127.0.0.1:25", []string{"footer=x"} }, "--list-set, --dkim and --personalize"},
		{"DKIM keys for another MTA", func(o *options) { o.target, o.dkim = "127.0.0.1:25", []string{"rsa"} }, "--list-set, --dkim and --personalize"},
		{"personalize for another MTA", func(o *options) { o.target, o.personalize = "127.0.0.1:25", "verp" }, "--list-set, --dkim and --personalize"},
		{"unknown world", func(o *options) { o.world = "moon" }, `--world "moon"`},
		{"internet flag in the plain world", func(o *options) { o.setFlags = map[string]bool{"greylist": true} }, "--greylist shapes the Internet world"},
		{"plain flag in the internet world", func(o *options) {
			o.world, o.net, o.setFlags = worldInternet, defaultInternet(), map[string]bool{"rtt": true}
		}, "--rtt shapes the plain world"},
		{"giants over 100%", func(o *options) {
			o.world, o.net = worldInternet, defaultInternet()
			o.net.giants = []float64{0.6, 0.5}
		}, "add up to less than 1"},
		{"giants not largest first", func(o *options) {
			o.world, o.net = worldInternet, defaultInternet()
			o.net.giants = []float64{0.1, 0.3}
		}, "largest first"},
		{"more special domains than domains", func(o *options) {
			o.world, o.net, o.domains = worldInternet, defaultInternet(), 10
			o.net.greylist, o.net.giants = 0.95, []float64{0.3}
		}, "--greylist, --tarpit and --blackhole"},
		{"negative cap", func(o *options) {
			o.world, o.net, o.domains = worldInternet, defaultInternet(), 100
			o.net.throttleMsgs = -1
		}, "--throttle-msgs"},
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

func TestInternetDefaults(t *testing.T) {
	o := options{workload: "fanout", world: worldInternet, net: defaultInternet(), members: 10, domains: 200, size: 1000,
		messages: 1, posts: 1, dnsAddr: "127.0.0.1:0", timeout: time.Minute, settle: time.Second, setFlags: map[string]bool{}}
	if err := o.defaults(); err != nil || o.permFail != defaultUnknown {
		t.Errorf("internet defaults: err %v, --perm-fail %v; want nil, %v", err, o.permFail, defaultUnknown)
	}
	o.permFail, o.setFlags["perm-fail"] = 0, true
	if err := o.defaults(); err != nil || o.permFail != 0 {
		t.Errorf("--perm-fail 0 given: err %v, share %v; want it kept", err, o.permFail)
	}
}

func TestRangeFlags(t *testing.T) {
	var d durRange
	for in, want := range map[string]durRange{"5ms..200ms": {5 * time.Millisecond, 200 * time.Millisecond}, "30s": {30 * time.Second, 30 * time.Second}} {
		if err := d.Set(in); err != nil || d != want {
			t.Errorf("Set(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
	for _, bad := range []string{"200ms..5ms", "soon", "1s..", ""} {
		if err := d.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	var f floatList
	if err := f.Set("0.3, 0.1,0.05"); err != nil || !cmp.Equal([]float64(f), []float64{0.3, 0.1, 0.05}) {
		t.Errorf("floatList = %v, %v", f, err)
	}
	if err := f.Set("0.3,x"); err == nil {
		t.Error("floatList accepted 0.3,x")
	}
}
