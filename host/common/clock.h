/* The wall clock, one way for every subsystem. */
#ifndef LUAR_CLOCK_H
#define LUAR_CLOCK_H

/*
 * The wall clock as unix seconds with sub-second precision (CLOCK_REALTIME), plus the
 * test offset. Everything that reads the wall clock for its logic (queue due times, cron
 * ticks, webhook timestamps and signatures, cache TTLs, rate limits, luar.time.now) reads
 * it here, so `luar test`'s t.clock moves all of them at once.
 */
double luar_time_now(void);

/*
 * Moves the clock: luar_time_now() returns the real time plus `seconds` from now on (time
 * keeps flowing). Only `luar test` sets it (t.clock.advance / t.clock.set); 0 restores.
 */
void luar_time_set_offset(double seconds);
double luar_time_offset(void);

#endif
