package lists

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testSettingsDefaults(t *testing.T, be backend) {
	t.Parallel()
	s := be.withList(t, "l@example.org")
	got, err := s.Settings(context.Background(), "l@example.org")
	if err != nil {
		t.Fatal(err)
	}
	const day = 24 * time.Hour
	want := Settings{Posting: PostingMembers, NonmemberAction: ActionHold, HoldDays: 14, DMARC: DMARCMunge, Personalize: PersonalizeOff,
		SubscribePolicy: SubscribeConfirm, ConfirmExpire: 3 * day, MaxAutoresponses: 10,
		BounceScoreThreshold: 5, BounceInfoStaleAfter: 7 * day, BounceWarnings: 3, BounceWarningsInterval: 7 * day}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, DefaultSettings()); diff != "" {
		t.Errorf("DefaultSettings (-want +got):\n%s", diff)
	}
	if _, err := s.Settings(context.Background(), "nope@example.org"); !errors.Is(err, ErrNoList) {
		t.Errorf("settings of a missing list: %v, want ErrNoList", err)
	}
}

func testSetSettings(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, "l@example.org")
	got := setSettings(t, s, "L@Example.org", [][2]string{
		{"posting", "announce"}, {"nonmember_action", "reject"}, {"hold_days", "3"}, {"dmarc", "wrap"},
		{"subject_prefix", "[l]"}, {"footer", "-- \nunsubscribe: l-request@example.org\n"},
		{"archive_url", "https://lists.example.org/l/"}, {"personalize", "full"},
	})
	want := Settings{Posting: PostingAnnounce, NonmemberAction: ActionReject, HoldDays: 3, DMARC: DMARCWrap,
		SubjectPrefix: "[l]", Footer: "-- \nunsubscribe: l-request@example.org\n", ArchiveURL: "https://lists.example.org/l/",
		Personalize: PersonalizeFull}
	def := DefaultSettings()
	want.SubscribePolicy, want.ConfirmExpire, want.MaxAutoresponses = def.SubscribePolicy, def.ConfirmExpire, def.MaxAutoresponses
	want.BounceScoreThreshold, want.BounceInfoStaleAfter = def.BounceScoreThreshold, def.BounceInfoStaleAfter
	want.BounceWarnings, want.BounceWarningsInterval = def.BounceWarnings, def.BounceWarningsInterval
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}

	// Back to the default value: the setting is the default again.
	if err := s.SetSettings(ctx, "l@example.org", [][2]string{{"posting", "members"}, {"subject_prefix", ""}}); err != nil {
		t.Fatal(err)
	}
	vals, err := s.SettingValues(ctx, "l@example.org")
	if err != nil {
		t.Fatal(err)
	}
	wantVals := []SettingValue{
		{"posting", "members", true}, {"nonmember_action", "reject", false}, {"hold_days", "3", false},
		{"dmarc", "wrap", false}, {"subject_prefix", "", true},
		{"footer", "-- \nunsubscribe: l-request@example.org\n", false},
		{"archive_url", "https://lists.example.org/l/", false},
		{"personalize", "full", false},
		{"subscribe_policy", "confirm", true}, {"confirm_expire", "3d", true},
		{"max_autoresponses_per_day", "10", true}, {"bounce_score_threshold", "5", true},
		{"bounce_info_stale_after", "7d", true}, {"bounce_you_are_disabled_warnings", "3", true},
		{"bounce_you_are_disabled_warnings_interval", "7d", true},
	}
	if diff := cmp.Diff(wantVals, vals); diff != "" {
		t.Errorf("setting values (-want +got):\n%s", diff)
	}
	if rows, err := count(s, "settings"); err != nil || rows != 6 {
		t.Errorf("settings rows = %d, %v; want 6 (defaults are not stored)", rows, err)
	}
}

// TestSetSettingsBad: every bad key or value is named with what it
// accepts, and nothing is applied, the good ones included.
func testSetSettingsBad(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		kv   [2]string
		want string
	}{
		{[2]string{"colour", "blue"}, `unknown key "colour" (the keys are posting, nonmember_action, hold_days, dmarc, subject_prefix, footer, archive_url, personalize, subscribe_policy, confirm_expire, max_autoresponses_per_day, bounce_score_threshold, bounce_info_stale_after, bounce_you_are_disabled_warnings, bounce_you_are_disabled_warnings_interval)`},
		{[2]string{"subscribe_policy", "open"}, `subscribe_policy="open": accepted values are confirm, moderate, closed`},
		{[2]string{"confirm_expire", "3"}, `confirm_expire="3": not a number and a unit`},
		{[2]string{"confirm_expire", "31d"}, `confirm_expire="31d": out of range 1s..30d`},
		{[2]string{"bounce_info_stale_after", "12h"}, `bounce_info_stale_after="12h": out of range 1d..365d`},
		{[2]string{"bounce_score_threshold", "0"}, `bounce_score_threshold="0": out of range or not a number`},
		{[2]string{"bounce_score_threshold", "NaN"}, `bounce_score_threshold="NaN": out of range or not a number`},
		{[2]string{"bounce_you_are_disabled_warnings", "-1"}, `bounce_you_are_disabled_warnings="-1": out of range or not a whole number`},
		{[2]string{"posting", "everyone"}, `posting="everyone": accepted values are members, open, moderated, announce`},
		{[2]string{"posting", "Open"}, `accepted values are members, open, moderated, announce`},
		{[2]string{"nonmember_action", "bounce"}, `nonmember_action="bounce": accepted values are hold, reject, discard`},
		{[2]string{"dmarc", ""}, `dmarc="": accepted values are munge, wrap, none`},
		{[2]string{"hold_days", "0"}, `hold_days="0": out of range or not a number; want a whole number of days from 1 to 365`},
		{[2]string{"hold_days", "2w"}, `hold_days="2w"`},
		{[2]string{"hold_days", "366"}, `hold_days="366"`},
		{[2]string{"subject_prefix", "a\r\nBcc: x@y"}, `contains a line break or control character`},
		{[2]string{"subject_prefix", strings.Repeat("x", 101)}, `101 bytes long`},
		{[2]string{"footer", "ok\n" + strings.Repeat("x", 999)}, `line 2 is 999 bytes long`},
		{[2]string{"footer", "a\x00b"}, `line 1 contains a control character`},
		{[2]string{"footer", "\xff"}, `not UTF-8`},
		{[2]string{"archive_url", "ftp://x.example/"}, `not an http, https or mailto URL`},
		{[2]string{"archive_url", "lists.example.org/l"}, `not an http, https or mailto URL`},
		{[2]string{"archive_url", "https:///nohost"}, `no host`},
	}
	for _, tt := range tests {
		t.Run(tt.kv[0]+"="+tt.kv[1], func(t *testing.T) {
			t.Parallel()
			s := be.withList(t, "l@example.org")
			err := s.SetSettings(ctx, "l@example.org", [][2]string{{"posting", "open"}, tt.kv})
			if err == nil || !errors.Is(err, ErrBadSetting) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrBadSetting mentioning %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "nothing applied") {
				t.Errorf("err = %v, want it to say nothing was applied", err)
			}
			got, _ := s.Settings(ctx, "l@example.org")
			if got.Posting != PostingMembers {
				t.Errorf("posting = %s after a failed set, want the default: nothing applied", got.Posting)
			}
		})
	}
	s := be.withList(t, "l@example.org")
	if err := s.SetSettings(ctx, "nope@example.org", [][2]string{{"posting", "open"}}); !errors.Is(err, ErrNoList) {
		t.Errorf("set on a missing list: %v, want ErrNoList", err)
	}
}

func testModerators(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, "l@example.org")
	if n, err := s.AddModerators(ctx, "l@example.org", []string{"Mod@Example.COM", "b@example.net", "b@EXAMPLE.net"}); err != nil || n != 2 {
		t.Fatalf("AddModerators = %d, %v; want 2 (the last is the second in normal form)", n, err)
	}
	if _, err := s.AddModerators(ctx, "l@example.org", []string{"ok@example.com", "not an address"}); err == nil ||
		!strings.Contains(err.Error(), `"not an address"`) || !strings.Contains(err.Error(), "nothing applied") {
		t.Errorf("bad moderator address: %v", err)
	}
	got, err := s.Moderators(ctx, "l@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Mod@example.com", "b@example.net"}, got); diff != "" {
		t.Errorf("moderators (-want +got):\n%s", diff)
	}
	for addr, want := range map[string]bool{"mod@EXAMPLE.com": true, "MOD@example.com": true, "b@example.net": true, "ok@example.com": false, "bad": false} {
		if is, err := s.IsModerator(ctx, "l@example.org", addr); err != nil || is != want {
			t.Errorf("IsModerator(%s) = %v, %v; want %v", addr, is, err, want)
		}
	}
	if n, err := s.RemoveModerators(ctx, "l@example.org", []string{"b@example.net", "x@example.net"}); err != nil || n != 1 {
		t.Errorf("RemoveModerators = %d, %v; want 1", n, err)
	}
	if _, err := s.Moderators(ctx, "nope@example.org"); !errors.Is(err, ErrNoList) {
		t.Errorf("moderators of a missing list: %v", err)
	}
}

func testIsMember(t *testing.T, be backend) {
	t.Parallel()
	ctx := context.Background()
	s := be.withList(t, "l@example.org")
	addMembers(t, s, "l@example.org", "Alice@Example.org", "bob@example.net")
	for addr, want := range map[string]bool{
		"Alice@example.org": true, "alice@EXAMPLE.ORG": true, "<bob@example.net>": true,
		"bob@example.org": false, "carol@example.net": false, "not an address": false,
	} {
		if is, err := s.IsMember(ctx, "l@example.org", addr); err != nil || is != want {
			t.Errorf("IsMember(%s) = %v, %v; want %v", addr, is, err, want)
		}
	}
}

// TestMigrateFromVersion1 opens a store written by the first schema and
// finds its lists intact and the new tables there.
func TestMigrateFromVersion1(t *testing.T) {
	t.Parallel()
	path := rawDB(t, migrations[0], "INSERT INTO lists(address, owner, created) VALUES('l@example.org', '', 1)", "PRAGMA user_version = 1")
	s := openPath(t, path)
	ctx := context.Background()
	if err := s.SetSettings(ctx, "l@example.org", [][2]string{{"posting", "open"}}); err != nil {
		t.Fatalf("set after migration: %v", err)
	}
	var v int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != len(migrations) {
		t.Errorf("user_version = %d, %v; want %d", v, err, len(migrations))
	}
}

// TestMailSettings: the settings of commands by mail and bounce
// processing, with their units.
func TestMailSettings(t *testing.T) {
	t.Parallel()
	s := openWithList(t, "l@example.org")
	got := setSettings(t, s, "l@example.org", [][2]string{
		{"subscribe_policy", "moderate"}, {"confirm_expire", "90m"}, {"max_autoresponses_per_day", "0"},
		{"bounce_score_threshold", "2.5"}, {"bounce_info_stale_after", "2w"},
		{"bounce_you_are_disabled_warnings", "0"}, {"bounce_you_are_disabled_warnings_interval", "1d"},
	})
	want := DefaultSettings()
	want.SubscribePolicy, want.ConfirmExpire, want.MaxAutoresponses = SubscribeModerate, 90*time.Minute, 0
	want.BounceScoreThreshold, want.BounceInfoStaleAfter = 2.5, 14*24*time.Hour
	want.BounceWarnings, want.BounceWarningsInterval = 0, 24*time.Hour
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
	for _, d := range []time.Duration{time.Second, 90 * time.Second, time.Hour, 36 * time.Hour, 14 * 24 * time.Hour} {
		back, err := ParseDuration(FormatDuration(d))
		if err != nil || back != d {
			t.Errorf("ParseDuration(FormatDuration(%v) = %q) = %v, %v", d, FormatDuration(d), back, err)
		}
	}
}

// setSettings sets kv on list and returns the list's settings as read
// back under its address in lower case.
func setSettings(t *testing.T, s *Store, list string, kv [][2]string) Settings {
	t.Helper()
	ctx := context.Background()
	if err := s.SetSettings(ctx, list, kv); err != nil {
		t.Fatal(err)
	}
	got, err := s.Settings(ctx, strings.ToLower(list))
	if err != nil {
		t.Fatal(err)
	}
	return got
}
