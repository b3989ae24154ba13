package local

import (
	"fmt"
	"os/user"
	"strconv"
)

// RunAs returns the credentials |programs run with: those of name, or
// nil (the server's own) when name is empty. A server running as root
// (euid 0) with no name is refused, so that a line in an aliases file
// never runs a program as root; the server calls this at start.
func RunAs(name string, euid int) (*Credentials, error) {
	if name == "" {
		if euid == 0 {
			return nil, fmt.Errorf("refusing to run |program targets as root: set aliases.program_user to an unprivileged user")
		}
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("aliases.program_user %q: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("aliases.program_user %q: non-numeric uid %q or gid %q", name, u.Uid, u.Gid)
	}
	if uid == 0 {
		return nil, fmt.Errorf("aliases.program_user %q is root: name an unprivileged user", name)
	}
	return &Credentials{UID: uint32(uid), GID: uint32(gid)}, nil
}
