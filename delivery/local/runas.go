package local

import (
	"fmt"
	"os/user"
	"strconv"
	"syscall"
)

// RunAs returns the credentials |program and /file targets run with:
// those of name, with name's own group list (os/user's GroupIds, read
// from the group database), or nil (the server's own) when name is
// empty. The server calls it at start.
//
// A server running as root (euid 0) with no name is refused, so that a
// line in an aliases file never runs a program or writes a file as
// root. A server that is not root cannot change user: its children run
// as itself, so name must be empty or the server's own user.
func RunAs(name string, euid int) (*Credentials, error) {
	if name == "" {
		if euid == 0 {
			return nil, fmt.Errorf("refusing to run |program targets as root, or to write /file targets as root: set aliases.program_user to an unprivileged user")
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
	if euid != 0 {
		if uint64(euid) != uid {
			return nil, fmt.Errorf("aliases.program_user %q: fanmail runs as uid %d, not root, so it cannot run targets as uid %d: leave program_user empty or start fanmail as root", name, euid, uid)
		}
		return nil, nil // already that user: nothing to change
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("aliases.program_user %q: list groups: %w", name, err)
	}
	cred := &Credentials{UID: uint32(uid), GID: uint32(gid)}
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("aliases.program_user %q: non-numeric group id %q", name, id)
		}
		cred.Groups = append(cred.Groups, uint32(g))
	}
	return cred, nil
}

// credential is the SysProcAttr credential for cred: uid, gid and
// exactly cred's groups (setgroups(2), so none of the server's
// supplementary groups leak into the child). nil runs the child as the
// server's own user.
func credential(cred *Credentials) *syscall.Credential {
	if cred == nil {
		return nil
	}
	groups := cred.Groups
	if groups == nil {
		groups = []uint32{} // setgroups with an empty list: no supplementary groups
	}
	return &syscall.Credential{Uid: cred.UID, Gid: cred.GID, Groups: groups}
}
