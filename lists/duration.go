package lists

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Durations in settings are written as Mailman writes them: a whole
// number and one unit, s, m, h, d (24 hours) or w (7 days): "3d", "12h".

var durationUnits = map[byte]time.Duration{
	's': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour,
}

// ParseDuration reads a duration setting.
func ParseDuration(v string) (time.Duration, error) {
	if len(v) < 2 {
		return 0, errors.New("not a number and a unit")
	}
	unit, ok := durationUnits[v[len(v)-1]]
	if !ok {
		return 0, errors.New("the unit is not s, m, h, d or w")
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 || strings.HasPrefix(v, "+") {
		return 0, errors.New("not a whole number")
	}
	if n > math.MaxInt64/int64(unit) {
		return 0, errors.New("too long")
	}
	return time.Duration(n) * unit, nil
}

// FormatDuration writes d as ParseDuration reads it, in the largest unit
// up to days that divides it.
func FormatDuration(d time.Duration) string {
	for _, u := range []struct {
		c byte
		d time.Duration
	}{{'d', 24 * time.Hour}, {'h', time.Hour}, {'m', time.Minute}} {
		if d >= u.d && d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + string(u.c)
		}
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

func checkDuration(lo, hi time.Duration) func(string) error {
	return func(v string) error {
		d, err := ParseDuration(v)
		if err != nil {
			return err
		}
		if d < lo || d > hi {
			return fmt.Errorf("out of range %s..%s", FormatDuration(lo), FormatDuration(hi))
		}
		return nil
	}
}

func checkInt(lo, hi int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi || strings.HasPrefix(v, "+") {
			return errors.New("out of range or not a whole number")
		}
		return nil
	}
}

func checkThreshold(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0) || f > 1000 || strings.ContainsAny(v, "eEnN+") {
		return errors.New("out of range or not a number")
	}
	return nil
}
