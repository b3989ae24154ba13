//go:build race

package main

// raceEnabled says the tests run under the race detector, which makes
// moving bytes through go-smtp in the test process many times slower:
// tests that move a gigabyte scale down then.
const raceEnabled = true
