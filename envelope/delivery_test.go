package envelope

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRequestOnly: a part of an envelope has the chosen recipients in
// their order, leaves the original alone, and reports progress by the
// original's indexes (-1 for an index outside the part).
func TestRequestOnly(t *testing.T) {
	t.Parallel()
	var gotIdx []int
	var gotRes []Result
	r := Request{
		QueueID:  "q1",
		Envelope: Envelope{Sender: "list-bounces@example.org", Recipients: []string{"a@x", "b@x", "c@x", "d@x"}},
		Progress: func(idx []int, res []Result) { gotIdx, gotRes = idx, res },
	}
	part := r.Only([]int{3, 1})
	if diff := cmp.Diff([]string{"d@x", "b@x"}, part.Recipients); diff != "" {
		t.Errorf("part recipients (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a@x", "b@x", "c@x", "d@x"}, r.Recipients); diff != "" {
		t.Errorf("original recipients changed (-want +got):\n%s", diff)
	}
	if part.QueueID != "q1" || part.Sender != "list-bounces@example.org" {
		t.Errorf("part lost the request's other fields: %+v", part)
	}
	res := []Result{{Recipient: "b@x", Status: Delivered}, {Recipient: "d@x", Status: Failed}, {Status: Deferred}}
	part.Progress([]int{1, 0, 2}, res)
	if diff := cmp.Diff([]int{1, 3, -1}, gotIdx); diff != "" {
		t.Errorf("progress indexes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(res, gotRes); diff != "" {
		t.Errorf("progress results (-want +got):\n%s", diff)
	}

	r.Progress = nil
	if r.Only([]int{0}).Progress != nil {
		t.Error("a part of a request without Progress has one")
	}
}

// TestEnumNames: Status and Personalize print their names, and a value
// without one as kind(n).
func TestEnumNames(t *testing.T) {
	for _, c := range []struct {
		v    interface{ String() string }
		want string
	}{
		{Delivered, "sent"}, {Deferred, "deferred"}, {Failed, "bounced"},
		{Status(0), "status(0)"}, {Status(4), "status(4)"}, {Status(-1), "status(-1)"},
		{PersonalizeOff, "off"}, {PersonalizeVERP, "verp"}, {PersonalizeFull, "full"},
		{Personalize(3), "personalize(3)"}, {Personalize(255), "personalize(255)"},
	} {
		if got := c.v.String(); got != c.want {
			t.Errorf("%T %d: String() = %q; want %q", c.v, c.v, got, c.want)
		}
	}
}
