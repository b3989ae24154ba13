package aliases

import (
	"context"
	"fmt"

	"fanmail/address"
)

// Accepts reports whether ingress should take RCPT TO:<addr>: its domain
// is a local domain and its local part names an alias or a list. Nothing
// is expanded, so the answer is cheap; fanmail has no local mailboxes,
// so any other local name is unknown (550 5.1.1).
func (x *Expander) Accepts(ctx context.Context, addr string) (bool, error) {
	m, err := address.Parse(addr)
	if err != nil {
		return false, nil
	}
	s := &state{x: x}
	if !s.isLocal(m.Domain) {
		return false, nil
	}
	if _, ok := x.Table.lookup(m.Local); ok {
		return true, nil
	}
	if x.Lists == nil {
		return false, nil
	}
	_, ok, err := x.Lists.ListMembers(ctx, lower(m.String()))
	if err != nil {
		return false, fmt.Errorf("look up list %s: %w", m, err)
	}
	return ok, nil
}
