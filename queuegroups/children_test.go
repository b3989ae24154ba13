package queuegroups

import "testing"

func TestAutoChildren(t *testing.T) {
	t.Parallel()
	tests := []struct{ files, cpus, want int }{
		{1024, 2, minAutoChildren},     // nothing left after the reserve
		{20000, 2, 512},                // two cores: 256 each
		{8192, 8, 2048},                // eight cores: 256 each, within the files
		{1 << 20, 64, maxAutoChildren}, // a big machine: the ceiling
		{1 << 20, 1, 256},
		{2048, 16, 512}, // sixteen cores, but the files run out first
	}
	for _, tt := range tests {
		if got := autoChildren(tt.files, tt.cpus); got != tt.want {
			t.Errorf("autoChildren(%d files, %d cores) = %d, want %d", tt.files, tt.cpus, got, tt.want)
		}
	}
}
