#include "common/clock.h"

#include <time.h>

/* Seconds added to the real clock: 0 except under `luar test` (t.clock). Loop thread only. */
static double clock_offset;

double luar_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + clock_offset;
}

void luar_time_set_offset(double seconds)
{
    clock_offset = seconds;
}

double luar_time_offset(void)
{
    return clock_offset;
}
