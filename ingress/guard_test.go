package ingress

import (
	"log/slog"
	"testing"
)

// The guard's view of replies on their way out.
func TestGuardObserve(t *testing.T) {
	t.Parallel()
	type step struct {
		own    answer // the session claims the next reply, counted as own
		claim  bool
		writes []string
	}
	tests := []struct {
		name     string
		steps    []step
		errs     int
		junk     int
		wantBye  bool
		wantCut  bool
		maxErrs  int
		maxJunk  int
		overshot int
	}{
		{name: "greeting, EHLO lines, QUIT are not errors",
			steps: []step{{writes: []string{"220 fanmail.test ESMTP Service Ready\r\n",
				"250-Hello x\r\n", "250-PIPELINING\r\n", "250 SIZE 100\r\n", "221 2.0.0 Bye\r\n"}}},
			junk: 1, maxErrs: 5, maxJunk: 10},
		{name: "a reply split across writes counts once",
			steps: []step{{writes: []string{"50", "2 5.5.1 Missing", " MAIL FROM command.\r", "\n"}}},
			errs:  1, junk: 1, maxErrs: 5, maxJunk: 10},
		{name: "the session's own reply is not counted again",
			steps: []step{{own: answerError, claim: true, writes: []string{"550 5.1.1 No such list\r\n"}},
				{writes: []string{"354 Go ahead\r\n", "250 2.0.0 Continue\r\n"}}},
			errs: 1, maxErrs: 5, maxJunk: 10},
		{name: "junk past the limit is an error",
			steps: []step{{writes: repeat("250 2.0.0 I have successfully done nothing\r\n", 4)}},
			errs:  2, junk: 4, maxErrs: 5, maxJunk: 2},
		{name: "go-smtp's 452 4.5.3 uses the overshoot allowance",
			steps: []step{{writes: repeat("452 4.5.3 Maximum limit of 3 recipients reached\r\n", 3)}},
			errs:  1, junk: 3, maxErrs: 5, maxJunk: 10, overshot: 2},
		{name: "the error limit adds the 421",
			steps: []step{{writes: repeat("500 5.5.2 Error: bad syntax\r\n", 2)}},
			errs:  2, junk: 2, maxErrs: 2, maxJunk: 10, wantBye: true, wantCut: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{cfg: Config{Hostname: "fanmail.test", MaxErrors: tt.maxErrs, MaxJunkCommands: tt.maxJunk,
				RecipientOvershoot: tt.overshot}, log: slog.New(slog.DiscardHandler)}
			g := &guardConn{l: &loadListener{s: s}}
			var bye []byte
			for _, st := range tt.steps {
				if st.claim {
					g.own(st.own)
				}
				for _, w := range st.writes {
					if b, _, _ := g.observe([]byte(w)); b != nil {
						bye = b
					}
				}
			}
			if g.errors != tt.errs || g.junk != tt.junk || g.cut != tt.wantCut {
				t.Errorf("errors %d, junk %d, cut %v; want %d, %d, %v", g.errors, g.junk, g.cut, tt.errs, tt.junk, tt.wantCut)
			}
			if (bye != nil) != tt.wantBye || (bye != nil && string(bye) != tooManyErrors+"\r\n") {
				t.Errorf("421 added: %q, want one: %v", bye, tt.wantBye)
			}
		})
	}
}
