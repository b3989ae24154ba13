package render

import (
	"strings"
)

// Info is what the expander needs to know of a post before it decides
// what becomes of it.
type Info struct {
	From      string   // the address of the first From: mailbox; "" if none parses
	FromName  string   // its display name, decoded
	Subject   string   // decoded; as written if it cannot be decoded
	ListIDs   []string // the ids of the post's List-Id fields, without <>
	MessageID string   // the first Message-ID field's value, as written (unfolded); "" if none
}

// Parsed is a post's header read once: what the expander decides from, and
// what Render makes every list's copy from (Post.Parsed), so a post is
// parsed once however many lists it goes to.
type Parsed struct {
	Info   Info
	header header
}

// Parse reads a post's header. It fails only for a header that does not
// parse (ErrBadHeader).
func Parse(raw []byte) (*Parsed, error) {
	h, err := parseHeader(raw)
	if err != nil {
		return nil, err
	}
	p := &Parsed{header: h}
	info := &p.Info
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
	info.MessageID = strings.TrimSpace(h.Get("Message-Id"))
	return p, nil
}
