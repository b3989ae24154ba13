package queuegroups

// StatusFields is a test helper of this package that the
// queuegroups_test tests use too.
var StatusFields = statusFields
