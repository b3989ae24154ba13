package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// fanmailTarget is a fanmail server the tool builds, configures, fills
// with the plan's lists and runs for one measurement.
type fanmailTarget struct {
	bin, dir, cfg, listen string
	cmd                   *exec.Cmd
	exited                chan error
	logFile               *os.File
	stopOnce              sync.Once
	stopErr               error
	importTime            time.Duration // fanmail member add, all lists
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// buildFanmail compiles ./cmd/fanmail of the module in the working
// directory into dir.
func buildFanmail(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "fanmail")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/fanmail").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build fanmail (run from the fanmail module root or pass --fanmail-bin): %w\n%s", err, out)
	}
	return bin, nil
}

// setupFanmail writes a config that changes nothing but where fanmail
// listens, keeps its data and finds the tool's DNS and sinks (every queue
// and delivery setting stays at its embedded default), creates the plan's
// lists with the CLI, and makes the DKIM keys --dkim asks for.
//
// Every list gets posting=open: the tool measures fan-out, and its poster
// is no member (making it one would send it a copy). --list-set settings
// follow, so a run can measure a footer, a prefix or posting=members.
func setupFanmail(ctx context.Context, o *options, dir, dnsAddr string, p *plan, database string) (*fanmailTarget, error) {
	t := &fanmailTarget{bin: o.fanmailBin, dir: dir}
	if t.bin == "" {
		var err error
		if t.bin, err = buildFanmail(ctx, dir); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	t.listen = fmt.Sprintf("127.0.0.1:%d", port)
	t.cfg = filepath.Join(dir, "fanmail.toml")
	// Every injecting session comes from 127.0.0.1, as no real sender's
	// would: the per-client cap is raised to the session cap's default.
	sets := o.fanmailSet
	if !slices.ContainsFunc(sets, func(s string) bool { return strings.HasPrefix(s, "load.max_sessions_per_client=") }) {
		sets = append([]string{"load.max_sessions_per_client=500"}, sets...)
	}
	if database != "" {
		sets = append(sets, fmt.Sprintf("lists.database=%q", database))
	}
	if o.personalize == "full" {
		// The one-click links need a base URL, which needs the endpoint;
		// nothing requests it during the run.
		sets = append(sets, `web.listen="127.0.0.1:0"`, `web.base_url="https://`+listDomain+`"`)
	}
	cfg := fmt.Sprintf("hostname = \"fanmail.bench.test\"\nlisten = %q\ndata_dir = %q\n\n[delivery]\nresolvers = [%q]\nport = %d\n",
		t.listen, filepath.Join(dir, "data"), dnsAddr, o.sinkPort) + extraConfig(sets)
	if err := os.WriteFile(t.cfg, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("write fanmail config: %w", err)
	}
	for i, l := range p.lists {
		if _, err := t.run(ctx, "list", "create", l.addr, "--owner", ownerAddr); err != nil {
			return nil, err
		}
		f := filepath.Join(dir, fmt.Sprintf("members-%d.txt", i))
		if err := os.WriteFile(f, []byte(strings.Join(l.members, "\n")+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("write members file: %w", err)
		}
		start := time.Now()
		if _, err := t.run(ctx, "member", "add", l.addr, "--file", f); err != nil {
			return nil, err
		}
		t.importTime += time.Since(start)
		set := append([]string{"list", "set", l.addr, "posting=open"}, o.listSet...)
		if o.personalize != "" {
			set = append(set, "personalize="+o.personalize)
		}
		if _, err := t.run(ctx, set...); err != nil {
			return nil, err
		}
	}
	for _, alg := range o.dkim {
		if _, err := t.run(ctx, "dkim", "keygen", listDomain, "--algorithm", alg); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// run runs one fanmail CLI command against the benchmark's config.
func (t *fanmailTarget) run(ctx context.Context, args ...string) (string, error) {
	args = append([]string{"--config", t.cfg}, args...)
	out, err := exec.CommandContext(ctx, t.bin, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("fanmail %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// start runs `fanmail serve`, its log in the work directory, and waits
// until it accepts connections.
func (t *fanmailTarget) start(ctx context.Context) error {
	lf, err := os.Create(filepath.Join(t.dir, "fanmail.log"))
	if err != nil {
		return fmt.Errorf("create fanmail log: %w", err)
	}
	t.logFile = lf
	t.cmd = exec.Command(t.bin, "--config", t.cfg, "serve")
	t.cmd.Stdout, t.cmd.Stderr = lf, lf
	if err := t.cmd.Start(); err != nil {
		return fmt.Errorf("start fanmail: %w", err)
	}
	t.exited = make(chan error, 1)
	go func() { t.exited <- t.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-t.exited:
			return fmt.Errorf("fanmail exited at start (%v); see %s", err, lf.Name())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if c, err := net.DialTimeout("tcp", t.listen, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("fanmail not listening on %s after 30s; see %s", t.listen, lf.Name())
}

func (t *fanmailTarget) pid() int { return t.cmd.Process.Pid }

// stop sends SIGTERM and waits for a clean exit, killing it after 30s.
// Only the first call does anything.
func (t *fanmailTarget) stop() error {
	t.stopOnce.Do(func() { t.stopErr = t.terminate() })
	return t.stopErr
}

func (t *fanmailTarget) terminate() error {
	if t.cmd == nil || t.cmd.Process == nil || t.exited == nil {
		return nil
	}
	defer t.logFile.Close()
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-t.exited:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return fmt.Errorf("wait for fanmail: %w", err)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.exited
		return errors.New("fanmail did not stop within 30s of SIGTERM; killed")
	}
}

// extraConfig renders --set SECTION.KEY=VALUE settings as TOML that can
// follow the generated config, whose last table is [delivery].
func extraConfig(sets []string) string {
	var order []string
	bySection := map[string][]string{}
	for _, set := range sets {
		k, v, _ := strings.Cut(set, "=")
		i := strings.LastIndexByte(k, '.')
		section := k[:i]
		if _, ok := bySection[section]; !ok {
			order = append(order, section)
		}
		bySection[section] = append(bySection[section], k[i+1:]+" = "+v)
	}
	var b strings.Builder
	b.WriteString(strings.Join(bySection["delivery"], "\n"))
	for _, section := range order {
		if section != "delivery" {
			fmt.Fprintf(&b, "\n[%s]\n%s\n", section, strings.Join(bySection[section], "\n"))
		}
	}
	return b.String() + "\n"
}
