package queuegroups

// Test helpers of this package that the queuegroups_test tests use too.
var (
	WaitWithin   = waitWithin
	StatusFields = statusFields
)
