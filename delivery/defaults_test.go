package delivery

import (
	"crypto/x509"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestZeroConfigTakesDefaultConfig: New fills every zero field from
// DefaultConfig, so the defaults package config shows are the ones used.
func TestZeroConfigTakesDefaultConfig(t *testing.T) {
	t.Parallel()
	got, err := Config{HELO: "fanmail.test"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.HELO, want.Logger, want.ReplyRules = got.HELO, got.Logger, DefaultReplyRules
	if got.Logger == nil {
		t.Error("no logger filled in")
	}
	got.Logger, want.Logger = nil, nil
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(x509.CertPool{})); diff != "" {
		t.Errorf("zero config after defaults (-want +got):\n%s", diff)
	}
}
