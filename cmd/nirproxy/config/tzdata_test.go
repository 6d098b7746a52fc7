package config

// The time-zone database is built into the test binary, as it is into nirproxy, so that the
// tests of dsptTimeZone run on any machine, never skipped.
import _ "time/tzdata"
