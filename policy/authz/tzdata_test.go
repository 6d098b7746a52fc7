package authz

// The time-zone database is built into the test binary, as it is into nirproxy, so that the
// tests of a DSPT year in Europe/London run on any machine, never skipped.
import _ "time/tzdata"
