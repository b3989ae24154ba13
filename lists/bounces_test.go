package lists

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"fanmail/bounces"
)

// testMemberBounces: bounces are recorded against the member as stored
// (whatever the case of the report), scored in the same transaction; a
// disabled member is still a member but gets no copies; removal and
// enabling work on the state, and the evidence is bounded.
func testMemberBounces(t *testing.T, be backend) {
	ctx := context.Background()
	s := be.withList(t, "l@example.org")
	addMembers(t, s, "l@example.org", "Bob@x.example", "ok@x.example")
	disable := func(st bounces.State) (bounces.State, bounces.Decision) {
		st.Score++
		st.LastBounce, st.Disabled = created, created
		return st, bounces.Decision{Verdict: bounces.Disable, Reason: "test"}
	}
	ev := BounceEvent{At: created, Source: "smtp", Action: "failed", Status: "5.1.1", Severity: "hard",
		Diagnostic: "550 5.1.1 no such user", Evidence: strings.Repeat("x", 10000)}
	member, d, err := s.RecordBounce(ctx, "l@example.org", "bob@x.example", ev, disable)
	if err != nil || member != "Bob@x.example" || d.Verdict != bounces.Disable {
		t.Fatalf("RecordBounce = %q, %+v, %v", member, d, err)
	}
	if _, _, err := s.RecordBounce(ctx, "l@example.org", "stranger@x.example", ev, disable); !errors.Is(err, ErrNotMember) {
		t.Errorf("bounce of a non-member: %v, want ErrNotMember", err)
	}
	var got []string
	if err := s.EachMember(ctx, "l@example.org", func(a, _ string) error { got = append(got, a); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "ok@x.example" {
		t.Errorf("EachMember = %v, want only the enabled member", got)
	}
	if ok, _ := s.IsMember(ctx, "l@example.org", "bob@x.example"); !ok {
		t.Error("a disabled member is no member")
	}
	dis, err := s.DisabledMembers(ctx)
	if err != nil || len(dis) != 1 || dis[0].Address != "Bob@x.example" || dis[0].State.Score != 1 {
		t.Errorf("DisabledMembers = %+v, %v", dis, err)
	}
	for range maxBounceEvents + 5 {
		if _, _, err := s.RecordBounce(ctx, "l@example.org", "Bob@x.example", ev, func(st bounces.State) (bounces.State, bounces.Decision) {
			return st, bounces.Decision{Reason: "residual"}
		}); err != nil {
			t.Fatal(err)
		}
	}
	info, err := s.MemberBounceInfo(ctx, "l@example.org", "BOB@x.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Events) != maxBounceEvents || len(info.Events[0].Evidence) != maxEventEvidence || info.Events[0].Scored != "residual" {
		t.Errorf("%d events kept (want %d), evidence %d bytes (want %d), scored %q",
			len(info.Events), maxBounceEvents, len(info.Events[0].Evidence), maxEventEvidence, info.Events[0].Scored)
	}
	if was, err := s.EnableMember(ctx, "l@example.org", "bob@x.example"); err != nil || !was {
		t.Errorf("EnableMember = %v, %v", was, err)
	}
	if bm, _ := s.BouncingMembers(ctx, "l@example.org"); len(bm) != 0 {
		t.Errorf("bouncing after enable: %+v", bm)
	}
	// Disabled again, then removed by its state's verdict.
	if _, _, err := s.RecordBounce(ctx, "l@example.org", "bob@x.example", ev, disable); err != nil {
		t.Fatal(err)
	}
	d, err = s.UpdateBounce(ctx, "l@example.org", "bob@x.example", func(st bounces.State) (bounces.State, bounces.Decision) {
		return st, bounces.Decision{Verdict: bounces.Remove}
	})
	if err != nil || d.Verdict != bounces.Remove {
		t.Fatal(d, err)
	}
	if ok, _ := s.IsMember(ctx, "l@example.org", "bob@x.example"); ok {
		t.Error("still a member after removal")
	}
	if _, err := s.MemberBounceInfo(ctx, "l@example.org", "bob@x.example"); !errors.Is(err, ErrNotMember) {
		t.Errorf("info of a removed member: %v", err)
	}
	if dis, _ := s.DisabledMembers(ctx); len(dis) != 0 {
		t.Errorf("a removed member's state stayed: %+v", dis)
	}
}

// BenchmarkRecordBounces records a batch of 1,000 bounces, as the
// delivery side's recorder writes a fan-out's 5xx replies, each a new
// event for a member of a 10,000-member list.
func BenchmarkRecordBounces(b *testing.B) {
	ctx := context.Background()
	s := openWithList(b, "l@example.org")
	addrs := make([]string, 10_000)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("member%05d@d%02d.example", i, i%50)
	}
	addMembers(b, s, "l@example.org", addrs...)
	now := time.Now()
	recs := make([]BounceRecord, 1000)
	score := func(st bounces.State) (bounces.State, bounces.Decision) {
		st.Score++
		st.LastBounce = now
		return st, bounces.Decision{Reason: "hard bounce"}
	}
	for b.Loop() {
		for i := range recs {
			recs[i] = BounceRecord{Address: addrs[(i*7)%len(addrs)], Score: score,
				Event: BounceEvent{At: now, Source: "smtp", Action: "failed", Status: "5.1.1", Severity: "hard",
					Diagnostic: "550 5.1.1 no such user", RemoteMTA: "mx.example"}}
		}
		res, err := s.RecordBounces(ctx, "l@example.org", recs)
		if err != nil || len(res) != len(recs) || res[0].NotMember {
			b.Fatalf("RecordBounces = %d results, %v", len(res), err)
		}
	}
}
