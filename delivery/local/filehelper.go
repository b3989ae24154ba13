package local

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FileHelperCommand is the hidden subcommand that appends one message to
// a /file target. AppendFile runs the server's own binary with it, so any
// binary that calls AppendFile must hand the command to RunFileHelper
// (cmd/fanmail registers it; this package's tests do so in TestMain).
const FileHelperCommand = "internal-append-file"

// selfExe is the running binary, whatever path it was started by and
// even if that file has been replaced since.
const selfExe = "/proc/self/exe"

// sysexits.h codes the helper exits with, as mail.local does.
const (
	exUsage     = 64
	exCantCreat = 73 // permanent: no such directory, not a regular file
	exNoPerm    = 77 // refused by the safety checks: EnhancedRefused
)

// AppendFile appends the message to the mbox file at path: a "From
// SENDER DATE" line, the message with LF line endings and >From quoting,
// and a blank line. The file is locked with a path.lock dotlock (when the
// directory allows one) and flock(2), fsynced, and truncated back to its
// old size if the write fails part way.
//
// The work is done by a child process, this binary re-executed with
// FileHelperCommand under req.Cred (the program user with its own groups
// only), since a Go process cannot change user for one thread. A file
// the program user could not write itself is therefore never written,
// and a created file belongs to that user. The child first checks the
// path as sendmail's safefile() does (see safefile.go): a symbolic link
// anywhere, a hard link, an unsafe directory or file owner, or group or
// world write permission fail the recipient with EnhancedRefused. With
// a nil req.Cred (a server not running as root) the child runs as the
// server's own user and the same checks apply.
//
// timeout bounds the wait for the locks; the child as a whole gets as
// long again (at least 30s more) for the write, then is stopped with
// SIGTERM, on which it truncates what it wrote, and killed 5s later.
// /dev/null, as in sendmail, is accepted without a helper.
func AppendFile(ctx context.Context, path string, req Request, now time.Time, timeout time.Duration) Result {
	if !filepath.IsAbs(path) {
		return Result{Status: Failed, Reason: fmt.Sprintf("file %s: not an absolute path", path)}
	}
	if filepath.Clean(path) == os.DevNull {
		// As in sendmail, the one special file always accepted: the
		// usual way to discard an alias's mail.
		_, err := io.Copy(io.Discard, &sourceReader{ctx: ctx, r: req.Message})
		if err != nil {
			return Result{Status: Deferred, Reason: fmt.Sprintf("file %s: read message: %v", path, err)}
		}
		return Result{Status: Delivered, Reason: "discarded (" + os.DevNull + ")"}
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	limit := timeout + max(timeout, 30*time.Second)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, selfExe, FileHelperCommand,
		"-sender="+req.Sender, "-date="+strconv.FormatInt(now.Unix(), 10), "-timeout="+timeout.String(), "--", path)
	cmd.Args[0] = "fanmail"
	cmd.Dir = "/"
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: credential(req.Cred)}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var out limitedBuffer
	stdin, err := startPiped(cmd, &out, "helper")
	if err != nil {
		return Result{Status: Deferred, Reason: fmt.Sprintf("file %s: %v", path, err)}
	}
	src := &sourceReader{ctx: ctx, r: req.Message}
	// A helper that refuses the file exits without reading: its stdin
	// then fails with EPIPE, which says nothing the exit status does not.
	// Once ctx ends nothing more is sent, and no end marker: the helper
	// sees a cut message even if the signal has not reached it.
	_ = writeFramed(stdin, src)
	stdin.Close()
	err = cmd.Wait()
	output := strings.Join(strings.Fields(out.String()), " ")
	var exitErr *exec.ExitError
	switch {
	case src.err != nil:
		return Result{Status: Deferred, Reason: fmt.Sprintf("file %s: read message: %v", path, src.err)}
	case ctx.Err() == context.DeadlineExceeded:
		return Result{Status: Deferred, Reason: fmt.Sprintf("file %s: helper timed out after %v: %s", path, limit, output)}
	case ctx.Err() != nil:
		return Result{Status: Deferred, Reason: fmt.Sprintf("file %s: interrupted: %v: %s", path, ctx.Err(), output)}
	case err == nil:
		return Result{Status: Delivered, Reason: output}
	case errors.As(err, &exitErr) && exitErr.ExitCode() == exTempfail:
		return Result{Status: Deferred, Reason: output}
	case errors.As(err, &exitErr) && exitErr.ExitCode() == exCantCreat:
		return Result{Status: Failed, Reason: output}
	case errors.As(err, &exitErr) && exitErr.ExitCode() == exNoPerm:
		return Result{Status: Failed, Reason: output, Enhanced: EnhancedRefused}
	}
	// A crash, a kill or a usage error is the helper's fault, not the
	// target's: try again later.
	return Result{Status: Deferred, Reason: fmt.Sprintf("file %s: helper failed: %v: %s", path, err, output)}
}

// RunFileHelper is FileHelperCommand's entry point: args are its
// arguments (after the command name), stdin carries the message framed
// by AppendFile. It prints one line for the log and returns the exit
// status: 0 delivered, 75 (EX_TEMPFAIL) deferred, 73 (EX_CANTCREAT)
// failed, 77 (EX_NOPERM) refused as unsafe.
func RunFileHelper(args []string, stdin io.Reader, out io.Writer) int {
	fs := flag.NewFlagSet(FileHelperCommand, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	sender := fs.String("sender", "", "envelope sender")
	date := fs.Int64("date", 0, "time for the From line, Unix seconds")
	timeout := fs.Duration("timeout", time.Minute, "bound on the wait for the locks")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *timeout <= 0 {
		fmt.Fprintf(out, "usage: %s -sender=ADDR -date=UNIX -timeout=DURATION -- /PATH (an internal command of fanmail)\n", FileHelperCommand)
		return exUsage
	}
	path := fs.Arg(0)
	if !filepath.IsAbs(path) {
		fmt.Fprintf(out, "file %s: not an absolute path\n", path)
		return exCantCreat
	}
	stop, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	res := appendMbox(stop, path, &frameReader{r: bufio.NewReaderSize(stdin, 64<<10)}, *sender, time.Unix(*date, 0), *timeout)
	fmt.Fprintln(out, res.Reason)
	switch {
	case res.Status == Delivered:
		return 0
	case res.Status == Deferred:
		return exTempfail
	case res.Enhanced == EnhancedRefused:
		return exNoPerm
	}
	return exCantCreat
}

// The message goes to the helper in frames (a 4-byte big-endian length,
// then that many bytes) ended by an empty frame, so that a message the
// server could not read to its end is never mistaken for a whole one.
const maxFrame = 1 << 20

var errIncomplete = errors.New("the message ended before its end marker (the server stopped sending it)")

func writeFramed(w io.Writer, r io.Reader) error {
	buf := make([]byte, 4+32<<10)
	for {
		n, err := r.Read(buf[4:])
		if n > 0 {
			binary.BigEndian.PutUint32(buf[:4], uint32(n))
			if _, werr := w.Write(buf[:4+n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			_, werr := w.Write([]byte{0, 0, 0, 0})
			return werr
		}
		if err != nil {
			return err
		}
	}
}

type frameReader struct {
	r    *bufio.Reader
	left int  // bytes left in the current frame
	done bool // the end marker was read
}

func (f *frameReader) Read(p []byte) (int, error) {
	for f.left == 0 {
		if f.done {
			return 0, io.EOF
		}
		var hdr [4]byte
		if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
			return 0, errIncomplete
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			f.done = true
			return 0, io.EOF
		}
		if n > maxFrame {
			return 0, fmt.Errorf("message frame of %d bytes: over the %d byte limit", n, maxFrame)
		}
		f.left = int(n)
	}
	n, err := f.r.Read(p[:min(len(p), f.left)])
	f.left -= n
	if err == io.EOF {
		return n, errIncomplete
	}
	return n, err
}

// sourceReader remembers a failure to read the message, so it is
// reported as such and not as whatever the helper made of the cut, and
// stops once ctx has ended.
type sourceReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}
