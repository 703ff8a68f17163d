/* The wall clock, one way for every subsystem. */
#ifndef LUAR_CLOCK_H
#define LUAR_CLOCK_H

/* The wall clock as unix seconds with sub-second precision (CLOCK_REALTIME). */
double luar_time_now(void);

#endif
