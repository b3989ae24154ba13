package lists

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Posting is who may post to a list (setting posting).
type Posting string

const (
	PostingMembers   Posting = "members"   // members post; others follow nonmember_action
	PostingOpen      Posting = "open"      // anyone posts
	PostingModerated Posting = "moderated" // every post is held for a moderator
	PostingAnnounce  Posting = "announce"  // only moderators post; others follow nonmember_action
)

// NonmemberAction is what happens to a post from someone who may not
// post (setting nonmember_action).
type NonmemberAction string

const (
	ActionHold    NonmemberAction = "hold"    // kept for a moderator
	ActionReject  NonmemberAction = "reject"  // 550 5.7.1 at the end of DATA
	ActionDiscard NonmemberAction = "discard" // accepted and dropped
)

// DMARCMode is what a list does to a post whose author's domain
// publishes DMARC p=reject or p=quarantine (setting dmarc).
type DMARCMode string

const (
	DMARCMunge DMARCMode = "munge" // From: becomes the list, the author goes to Reply-To
	DMARCWrap  DMARCMode = "wrap"  // the post travels as a message/rfc822 attachment
	DMARCNone  DMARCMode = "none"  // the post goes out as it is
)

// SubscribePolicy is how a subscription request by mail is decided
// (setting subscribe_policy).
type SubscribePolicy string

const (
	SubscribeConfirm  SubscribePolicy = "confirm"  // the address confirms (double opt-in)
	SubscribeModerate SubscribePolicy = "moderate" // the address confirms, then a moderator approves
	SubscribeClosed   SubscribePolicy = "closed"   // no subscriptions by mail
)

// Settings are a list's settings, defaults filled in.
type Settings struct {
	Posting         Posting
	NonmemberAction NonmemberAction
	HoldDays        int
	DMARC           DMARCMode
	SubjectPrefix   string // "" = none
	Footer          string // "" = none; lines end in "\n" or "\r\n"
	ArchiveURL      string // "" = no List-Archive
	Personalize     Personalize

	SubscribePolicy SubscribePolicy
	ConfirmExpire   time.Duration // how long a confirmation (or approval) token is good
	// MaxAutoresponses is how many answers to commands by mail one
	// address gets per day at most (Mailman's max_autoresponses_per_day).
	MaxAutoresponses int

	// Bounce processing, with Mailman's names and defaults.
	BounceScoreThreshold   float64
	BounceInfoStaleAfter   time.Duration
	BounceWarnings         int // bounce_you_are_disabled_warnings
	BounceWarningsInterval time.Duration
}

// Personalize is how a list's members get their copies (setting
// personalize): the same copy in envelopes of up to r members, or one
// transaction per member with its own envelope sender (VERP), and its
// own one-click unsubscribe link under its own DKIM signature (full).
type Personalize string

const (
	PersonalizeOff  Personalize = "off"
	PersonalizeVERP Personalize = "verp"
	PersonalizeFull Personalize = "full"
)

// Limits of the free-text settings.
const (
	maxHoldDays     = 365
	maxPrefixLen    = 100
	maxFooterLen    = 8 << 10
	maxFooterLine   = 998 // RFC 5322 §2.1.1
	maxArchiveURLen = 1000
)

// settingDef is one setting: its key, default, what it accepts and how
// it lands in Settings. The table is the one place settings are defined;
// `fanmail list show` and `list set` read it.
type settingDef struct {
	key    string
	def    string
	values []string // the accepted values, for settings that are a choice
	help   string   // what the value is, for settings that are free
	check  func(string) error
	apply  func(*Settings, string)
}

var settingDefs = []settingDef{
	{key: "posting", def: string(PostingMembers),
		values: []string{"members", "open", "moderated", "announce"},
		apply:  func(s *Settings, v string) { s.Posting = Posting(v) }},
	{key: "nonmember_action", def: string(ActionHold),
		values: []string{"hold", "reject", "discard"},
		apply:  func(s *Settings, v string) { s.NonmemberAction = NonmemberAction(v) }},
	{key: "hold_days", def: "14", help: fmt.Sprintf("a whole number of days from 1 to %d", maxHoldDays),
		check: checkHoldDays,
		apply: func(s *Settings, v string) { s.HoldDays, _ = strconv.Atoi(v) }},
	{key: "dmarc", def: string(DMARCMunge),
		values: []string{"munge", "wrap", "none"},
		apply:  func(s *Settings, v string) { s.DMARC = DMARCMode(v) }},
	{key: "subject_prefix", def: "", help: fmt.Sprintf("one line of text up to %d bytes, e.g. [announce]; empty for none", maxPrefixLen),
		check: checkPrefix,
		apply: func(s *Settings, v string) { s.SubjectPrefix = v }},
	{key: "footer", def: "", help: fmt.Sprintf("UTF-8 text up to %d bytes, lines up to %d; empty for none", maxFooterLen, maxFooterLine),
		check: checkFooter,
		apply: func(s *Settings, v string) { s.Footer = v }},
	{key: "archive_url", def: "", help: "an absolute http, https or mailto URL; empty for none",
		check: checkArchiveURL,
		apply: func(s *Settings, v string) { s.ArchiveURL = v }},
	{key: "personalize", def: string(PersonalizeOff), values: []string{"off", "verp", "full"},
		apply: func(s *Settings, v string) { s.Personalize = Personalize(v) }},
	{key: "subscribe_policy", def: string(SubscribeConfirm),
		values: []string{"confirm", "moderate", "closed"},
		apply:  func(s *Settings, v string) { s.SubscribePolicy = SubscribePolicy(v) }},
	{key: "confirm_expire", def: "3d", help: "a duration from 1s to 30d: a number and s, m, h, d or w, e.g. 3d",
		check: checkDuration(time.Second, 30*24*time.Hour),
		apply: func(s *Settings, v string) { s.ConfirmExpire, _ = ParseDuration(v) }},
	{key: "max_autoresponses_per_day", def: "10", help: "a whole number from 0 (never answer) to 1000",
		check: checkInt(0, 1000),
		apply: func(s *Settings, v string) { s.MaxAutoresponses, _ = strconv.Atoi(v) }},
	{key: "bounce_score_threshold", def: "5", help: "a number above 0 and up to 1000 (a hard bounce scores 1, a soft one 0.5)",
		check: checkThreshold,
		apply: func(s *Settings, v string) { s.BounceScoreThreshold, _ = strconv.ParseFloat(v, 64) }},
	{key: "bounce_info_stale_after", def: "7d", help: "a duration from 1d to 365d, e.g. 7d",
		check: checkDuration(24*time.Hour, 365*24*time.Hour),
		apply: func(s *Settings, v string) { s.BounceInfoStaleAfter, _ = ParseDuration(v) }},
	{key: "bounce_you_are_disabled_warnings", def: "3", help: "a whole number from 0 (remove at once) to 100",
		check: checkInt(0, 100),
		apply: func(s *Settings, v string) { s.BounceWarnings, _ = strconv.Atoi(v) }},
	{key: "bounce_you_are_disabled_warnings_interval", def: "7d", help: "a duration from 1s to 365d, e.g. 7d",
		check: checkDuration(time.Second, 365*24*time.Hour),
		apply: func(s *Settings, v string) { s.BounceWarningsInterval, _ = ParseDuration(v) }},
}

// DefaultSettings returns the settings of a list that changed none.
func DefaultSettings() Settings {
	var s Settings
	for _, d := range settingDefs {
		d.apply(&s, d.def)
	}
	return s
}

// SettingKeys returns every setting's key, in the order list show prints
// them.
func SettingKeys() []string {
	keys := make([]string, len(settingDefs))
	for i, d := range settingDefs {
		keys[i] = d.key
	}
	return keys
}

func findSetting(key string) *settingDef {
	for i := range settingDefs {
		if settingDefs[i].key == key {
			return &settingDefs[i]
		}
	}
	return nil
}

// ErrBadSetting means a setting's key is unknown or its value is not
// one it accepts; the error names the key and what it accepts.
var ErrBadSetting = errors.New("bad setting")

// CheckSetting reports whether value is good for key, with an error
// naming the key and the accepted values when it is not.
func CheckSetting(key, value string) error {
	d := findSetting(key)
	if d == nil {
		return fmt.Errorf("%w: unknown key %q (the keys are %s)", ErrBadSetting, key, strings.Join(SettingKeys(), ", "))
	}
	if d.values != nil {
		if !slices.Contains(d.values, value) {
			return fmt.Errorf("%w: %s=%q: accepted values are %s", ErrBadSetting, key, value, strings.Join(d.values, ", "))
		}
		return nil
	}
	if err := d.check(value); err != nil {
		return fmt.Errorf("%w: %s=%q: %v; want %s", ErrBadSetting, key, clip(value), err, d.help)
	}
	return nil
}

// clip shortens a long value for an error message.
func clip(v string) string {
	if len(v) <= 60 {
		return v
	}
	return v[:57] + "..."
}

func checkHoldDays(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxHoldDays {
		return errors.New("out of range or not a number")
	}
	return nil
}

func checkPrefix(v string) error {
	if err := checkText(v, maxPrefixLen); err != nil {
		return err
	}
	if strings.ContainsFunc(v, isControl) {
		return errors.New("contains a line break or control character")
	}
	return nil
}

func checkFooter(v string) error {
	if err := checkText(v, maxFooterLen); err != nil {
		return err
	}
	for i, line := range strings.Split(strings.ReplaceAll(v, "\r\n", "\n"), "\n") {
		if len(line) > maxFooterLine {
			return fmt.Errorf("line %d is %d bytes long", i+1, len(line))
		}
		if strings.ContainsFunc(line, func(r rune) bool { return isControl(r) && r != '\t' }) {
			return fmt.Errorf("line %d contains a control character", i+1)
		}
	}
	return nil
}

// checkText is what a prefix and a footer both must be: UTF-8 of at
// most limit bytes.
func checkText(v string, limit int) error {
	switch {
	case !utf8.ValidString(v):
		return errors.New("not UTF-8")
	case len(v) > limit:
		return fmt.Errorf("%d bytes long", len(v))
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func checkArchiveURL(v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case len(v) > maxArchiveURLen:
		return fmt.Errorf("%d bytes long", len(v))
	case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "mailto":
		return errors.New("not an http, https or mailto URL")
	case u.Scheme != "mailto" && u.Host == "":
		return errors.New("no host")
	case strings.ContainsAny(v, " \t<>\"") || strings.ContainsFunc(v, isControl):
		return errors.New("contains a space, <, >, \" or a control character")
	}
	return nil
}

// SettingValue is one setting of a list as `fanmail list show` prints it.
type SettingValue struct {
	Key, Value string
	Default    bool // the list has not changed it
}

// Settings returns the settings of list, defaults filled in, or an error
// wrapping ErrNoList.
func (s *Store) Settings(ctx context.Context, list string) (Settings, error) {
	vals, err := s.SettingValues(ctx, list)
	if err != nil {
		return Settings{}, err
	}
	var out Settings
	for i, v := range vals {
		settingDefs[i].apply(&out, v.Value)
	}
	return out, nil
}

// SettingValues returns every setting of list in SettingKeys order, with
// whether it is the default.
func (s *Store) SettingValues(ctx context.Context, list string) ([]SettingValue, error) {
	id, err := listID(ctx, s.db, list)
	if err != nil {
		return nil, err
	}
	vals, err := settingValues(ctx, s.db, id)
	if err != nil {
		return nil, fmt.Errorf("settings of %s: %w", list, err)
	}
	return vals, nil
}

// rowQueryer is what both *sql.DB and *sql.Tx offer for reading rows.
type rowQueryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// settingsOf returns the settings of the list with id, defaults filled
// in, in q's view (a transaction's, say).
func settingsOf(ctx context.Context, q rowQueryer, id int64) (Settings, error) {
	vals, err := settingValues(ctx, q, id)
	if err != nil {
		return Settings{}, fmt.Errorf("settings of list %d: %w", id, err)
	}
	var out Settings
	for i, v := range vals {
		settingDefs[i].apply(&out, v.Value)
	}
	return out, nil
}

func settingValues(ctx context.Context, q rowQueryer, id int64) ([]SettingValue, error) {
	rows, err := q.QueryContext(ctx, "SELECT key, value FROM settings WHERE list_id = ?", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	set := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		set[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]SettingValue, len(settingDefs))
	for i, d := range settingDefs {
		out[i] = SettingValue{Key: d.key, Value: d.def, Default: true}
		// A value a newer fanmail wrote and this one does not accept
		// reads as the default rather than stopping the list.
		if v, ok := set[d.key]; ok && CheckSetting(d.key, v) == nil {
			out[i] = SettingValue{Key: d.key, Value: v, Default: v == d.def}
		}
	}
	return out, nil
}

// SetSettings changes settings of list, all of them or none: every key
// and value is checked first (the error names each bad one), then all
// are written in one transaction. A value equal to the default makes the
// setting the default again.
func (s *Store) SetSettings(ctx context.Context, list string, kv [][2]string) error {
	var errs []error
	for _, p := range kv {
		if err := CheckSetting(p[0], p[1]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("settings of %s, nothing applied:\n%w", list, errors.Join(errs...))
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		id, err := listID(ctx, tx, list)
		if err != nil {
			return err
		}
		for _, p := range kv {
			if p[1] == findSetting(p[0]).def {
				_, err = tx.ExecContext(ctx, "DELETE FROM settings WHERE list_id = ? AND key = ?", id, p[0])
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO settings(list_id, key, value) VALUES(?, ?, ?)
					ON CONFLICT(list_id, key) DO UPDATE SET value = excluded.value`, id, p[0], p[1])
			}
			if err != nil {
				return fmt.Errorf("set %s of %s: %w", p[0], list, err)
			}
		}
		return nil
	})
}
