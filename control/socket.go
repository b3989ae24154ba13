package control

// The socket's two guards. Its file is 0600 from the moment bind creates
// it, so no other user can connect even for an instant; and every
// connection's peer is checked with SO_PEERCRED, so that a socket whose
// mode or directory was opened up by mistake still answers only root
// and the server's own user.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// socketUmask leaves the socket file rw for its owner only.
const socketUmask = 0o177

// listenPrivate binds a unix socket at path, mode 0600 from its creation.
// bind(2) applies the umask, which is one per process: changing it here
// would race every other goroutine creating a file or starting a child.
// So the bind runs on an OS thread that first unshares its filesystem
// attributes (CLONE_FS) and sets its own umask; that thread is never
// given back to the scheduler. Where unshare is refused (some container
// seccomp profiles), the socket is bound inside a fresh 0700 directory
// beside path, made 0600 there, and renamed into place.
func listenPrivate(path string) (net.Listener, error) {
	type result struct {
		ln       net.Listener
		err      error
		unshared bool
	}
	done := make(chan result, 1)
	go func() {
		// Locked until the goroutine ends: the runtime then ends the
		// thread too, umask and all.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- result{err: err}
			return
		}
		unix.Umask(socketUmask)
		ln, err := net.Listen("unix", path)
		done <- result{ln, err, true}
	}()
	r := <-done
	if !r.unshared {
		return listenInPrivateDir(path)
	}
	return r.ln, r.err
}

// listenInPrivateDir binds in a new directory only the owner can enter,
// sets the socket's mode there, and renames it to path.
func listenInPrivateDir(path string) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".control-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // the name moves; Serve removes it
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// peer is who is at the other end of a connection.
type peer struct {
	uid uint32
	err error
}

type peerKey struct{}

// withPeer records the connection's SO_PEERCRED in its context.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	p := peer{err: errors.New("not a unix socket")}
	if uc, ok := c.(*net.UnixConn); ok {
		p = peerOf(uc)
	}
	return context.WithValue(ctx, peerKey{}, p)
}

func peerOf(c *net.UnixConn) peer {
	raw, err := c.SyscallConn()
	if err != nil {
		return peer{err: err}
	}
	var p peer
	if err := raw.Control(func(fd uintptr) {
		var cred *unix.Ucred
		cred, p.err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if p.err == nil {
			p.uid = cred.Uid
		}
	}); err != nil {
		return peer{err: err}
	}
	return p
}

// allowUID is who may use the socket: root, and the user the server runs
// as.
func allowUID(serverUID uint32) func(uint32) bool {
	return func(uid uint32) bool { return uid == 0 || uid == serverUID }
}

// requirePeer answers 403 to a caller allow refuses, naming who may call.
func requirePeer(h http.Handler, allow func(uint32) bool, serverUID uint32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(peer)
		switch {
		case p.err != nil:
			writeJSON(w, http.StatusForbidden, map[string]string{
				"error": fmt.Sprintf("permission denied: cannot tell who is calling (%v)", p.err)})
		case !allow(p.uid):
			writeJSON(w, http.StatusForbidden, map[string]string{
				"error": fmt.Sprintf("permission denied: the queue socket answers root and uid %d (the server's user), not uid %d; run the command as one of them", serverUID, p.uid)})
		default:
			h.ServeHTTP(w, r)
		}
	})
}
