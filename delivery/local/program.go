package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// sysexits.h: the exit codes programs use to tell the mailer what happened.
var sysexits = map[int]string{
	64: "EX_USAGE", 65: "EX_DATAERR", 66: "EX_NOINPUT", 67: "EX_NOUSER",
	68: "EX_NOHOST", 69: "EX_UNAVAILABLE", 70: "EX_SOFTWARE", 71: "EX_OSERR",
	72: "EX_OSFILE", 73: "EX_CANTCREAT", 74: "EX_IOERR", 75: "EX_TEMPFAIL",
	76: "EX_PROTOCOL", 77: "EX_NOPERM", 78: "EX_CONFIG",
}

// exTempfail is the one exit code that means "try again later".
const exTempfail = 75

// maxOutput bounds how much of a program's output goes into Reason.
const maxOutput = 512

// RunProgram runs command with /bin/sh -c, the message on stdin (LF line
// endings) and SENDER and RECIPIENT in a minimal environment. Exit 0 is
// delivered, 75 (EX_TEMPFAIL) deferred, any other exit failed; a program
// still running after timeout is killed with its process group and the
// delivery deferred, as is a program killed by a signal. The program runs
// as req.Cred with that user's groups only.
func RunProgram(ctx context.Context, command string, req Request, timeout time.Duration) Result {
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SENDER=" + req.Sender, "RECIPIENT=" + req.Recipient, "HOME=/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: credential(req.Cred)}
	// Kill the whole group: the shell's children must not outlive a timeout.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out limitedBuffer
	stdin, err := startPiped(cmd, &out, "shell")
	if err != nil {
		return Result{Status: Deferred, Reason: fmt.Sprintf("program %q: %v", command, err)}
	}
	// A program may exit without reading its input; that is its right.
	_, copyErr := unixLines(stdin, req.Message, false)
	stdin.Close()
	err = cmd.Wait()
	output := strings.TrimSpace(out.String())
	if output != "" {
		output = ": " + strings.Join(strings.Fields(output), " ")
	}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return Result{Status: Deferred, Reason: fmt.Sprintf("program %q timed out after %v%s", command, timeout, output)}
	case err == nil && copyErr != nil && !errors.Is(copyErr, syscall.EPIPE) && !errors.Is(copyErr, os.ErrClosed):
		return Result{Status: Deferred, Reason: fmt.Sprintf("program %q: write message: %v", command, copyErr)}
	case err == nil:
		return Result{Status: Delivered, Reason: fmt.Sprintf("program %q exited 0%s", command, output)}
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return Result{Status: Deferred, Reason: fmt.Sprintf("program %q killed by signal %v%s", command, ws.Signal(), output)}
		}
		code := exitErr.ExitCode()
		status := Failed
		if code == exTempfail {
			status = Deferred
		}
		name := sysexits[code]
		if name != "" {
			name = " (" + name + ")"
		}
		return Result{Status: status, Reason: fmt.Sprintf("program %q exited %d%s%s", command, code, name, output)}
	}
	return Result{Status: Deferred, Reason: fmt.Sprintf("program %q: %v", command, err)}
}

// startPiped starts cmd with its stdin a pipe, which it returns, and its
// stdout and stderr both kept in out. A failure to start names what did
// not start.
func startPiped(cmd *exec.Cmd, out *limitedBuffer, what string) (io.WriteCloser, error) {
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	return stdin, nil
}

// limitedBuffer keeps the first maxOutput bytes written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
