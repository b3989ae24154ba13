package render

import (
	"strings"
)

// Info is what the expander needs to know of a post before it decides
// what becomes of it.
type Info struct {
	From     string   // the address of the first From: mailbox; "" if none parses
	FromName string   // its display name, decoded
	Subject  string   // decoded; as written if it cannot be decoded
	ListIDs  []string // the ids of the post's List-Id fields, without <>
}

// Inspect reads a post's header. It fails only for a header that does
// not parse (ErrBadHeader).
func Inspect(raw []byte) (Info, error) {
	h, err := parseHeader(raw)
	if err != nil {
		return Info{}, err
	}
	var info Info
	if a, _ := firstFrom(h); a != nil {
		info.From, info.FromName = a.Address, a.Name
	}
	mh := mailHeader(h)
	if info.Subject, err = mh.Subject(); err != nil {
		info.Subject = h.Get("Subject")
	}
	for _, v := range h.Values("List-Id") {
		if i, j := strings.IndexByte(v, '<'), strings.LastIndexByte(v, '>'); i >= 0 && j > i {
			info.ListIDs = append(info.ListIDs, strings.TrimSpace(v[i+1:j]))
		}
	}
	return info, nil
}
