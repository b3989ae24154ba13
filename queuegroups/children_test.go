package queuegroups

import "testing"

func TestAutoChildren(t *testing.T) {
	t.Parallel()
	tests := []struct{ files, cpus, want int }{
		{1024, 2, minAutoChildren},     // nothing left after the reserve
		{20000, 2, 512},                // two cores: 256 each
		{4096, 8, 1536},                // eight cores, but the files run out first
		{1 << 20, 64, maxAutoChildren}, // a big machine: the ceiling
		{1 << 20, 1, 256},
	}
	for _, tt := range tests {
		if got := autoChildren(tt.files, tt.cpus); got != tt.want {
			t.Errorf("autoChildren(%d files, %d cores) = %d, want %d", tt.files, tt.cpus, got, tt.want)
		}
	}
}
