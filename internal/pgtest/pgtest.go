// Package pgtest starts a throwaway PostgreSQL cluster for the tests of
// the shared list store: initdb in a temporary directory, a server on a
// private port of 127.0.0.1 (no Unix socket, trust authentication, no
// fsync unless asked), stopped and removed when the test ends. Only
// _test.go files and the benchmark tool import it.
//
// It needs the server binaries of the Debian package postgresql
// (initdb, pg_ctl, postgres), found in PATH, /usr/local/bin or
// /usr/lib/postgresql/*/bin; without them Start skips the test, naming
// the package. initdb refuses to run as root, so as root the cluster
// runs as the user postgres (which the package creates) or, failing
// that, nobody, through runuser.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Superuser is the cluster's superuser role; it has no password.
const Superuser = "fanmail"

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	bin  string // directory of initdb, pg_ctl and postgres
	dir  string // holds data/ and server.log
	port int
	as   string // the user the server runs as when we are root; "" = us
	dbs  atomic.Int64
}

// Options change how Start sets the cluster up.
type Options struct {
	// Durable keeps fsync and synchronous commit on, as a production
	// server has them; benchmarks want it, tests do not.
	Durable bool
}

// Start starts a cluster for t, stopped and removed when t ends; it
// skips t when the PostgreSQL binaries are absent.
func Start(t testing.TB) *Cluster {
	return StartOptions(t, Options{})
}

// StartOptions is Start with options.
func StartOptions(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin, err := FindBinaries()
	if err != nil {
		t.Skip(err.Error())
	}
	c, err := Launch(bin, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(c.dir, "server.log")); err == nil {
				t.Logf("PostgreSQL server log:\n%s", tail(log, 4000))
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	return c
}

// ErrNoBinaries is FindBinaries' error: the tests that need PostgreSQL
// skip with its message.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in PATH, /usr/local/bin or /usr/lib/postgresql/*/bin; install the Debian package postgresql to run this test")

// FindBinaries returns the directory holding initdb, pg_ctl and
// postgres: PATH first, then /usr/local/bin, then the newest
// /usr/lib/postgresql/N/bin.
func FindBinaries() (string, error) {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	dirs = append(dirs, "/usr/local/bin")
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(versions, func(a, b string) int { return pgVersion(b) - pgVersion(a) })
	dirs = append(dirs, versions...)
	for _, d := range dirs {
		ok := true
		for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(d, name)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				ok = false
				break
			}
		}
		if ok {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

// pgVersion is N of /usr/lib/postgresql/N/bin, 0 if it is no number.
func pgVersion(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return n
}

// Launch initializes and starts a cluster with the binaries in bin; the
// caller stops it with Stop. Start is the form for tests.
func Launch(bin string, o Options) (*Cluster, error) {
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		c.as = "nobody"
		if _, err := user.Lookup("postgres"); err == nil {
			c.as = "postgres"
		}
	}
	dir, err := os.MkdirTemp("", "fanmail-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c.dir = dir
	if err := c.chown(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", Superuser, "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	// The port is found free and then handed to the server, which can
	// lose it to another process in between: try a few.
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		opts := []string{"-c listen_addresses=127.0.0.1", "-p " + strconv.Itoa(c.port),
			"-c unix_socket_directories=''", "-c max_connections=200"}
		if !o.Durable {
			opts = append(opts, "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
		}
		out, err := c.run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60",
			"-o", strings.Join(opts, " "), "start")
		if err == nil {
			break
		}
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, tail(log, 4000))
		}
	}
	return c, nil
}

// Stop stops the server at once (no checkpoint: the data is thrown
// away) and removes its directory.
func (c *Cluster) Stop() error {
	out, err := c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
	if err != nil {
		err = fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return errors.Join(err, os.RemoveAll(c.dir))
}

// PID returns the process ID of the cluster's postmaster, whose process
// tree is the whole server.
func (c *Cluster) PID() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("pgtest: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("pgtest: postmaster.pid: %w", err)
	}
	return pid, nil
}

// URL returns the URL of database db on the cluster, as the superuser.
func (c *Cluster) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(Superuser), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// NewDatabase creates an empty database and returns its URL.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	u, err := c.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// CreateDatabase creates an empty database and returns its URL.
func (c *Cluster) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("fanmail%d", c.dbs.Add(1))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return c.URL(name), nil
}

// run runs one of the cluster's binaries, as c.as when set.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if c.as != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.as, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	// The server's working directory must be one its user may enter.
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	return cmd.CombinedOutput()
}

// chown gives dir to the user the server runs as.
func (c *Cluster) chown(dir string) error {
	if c.as == "" {
		return nil
	}
	u, err := user.Lookup(c.as)
	if err != nil {
		return fmt.Errorf("pgtest: user %s: %w", c.as, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("pgtest: give %s to %s: %w", dir, c.as, err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
