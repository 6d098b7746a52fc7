//go:build race

package media

// raceEnabled is true under the race detector, which makes sync.Pool drop items at random
// and so adds allocations that a production build does not make.
const raceEnabled = true
