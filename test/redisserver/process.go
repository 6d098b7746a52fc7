package redisserver

import "time"

// stopGrace is how long a stop waits after SIGTERM before it sends SIGKILL. Without save points
// redis-server exits within a few milliseconds of SIGTERM, saving nothing, as SHUTDOWN NOSAVE
// would.
const stopGrace = 5 * time.Second
