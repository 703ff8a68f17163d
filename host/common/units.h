/* Parsing of the human units used in configuration: sizes ("1MiB") and durations. */
#ifndef LUAR_UNITS_H
#define LUAR_UNITS_H

#include <stdint.h>

/*
 * Parses a byte size: a plain integer, or a number followed by B, K/KB/KiB, M/MB/MiB,
 * G/GB/GiB (KB = 1000, KiB = 1024; K alone = 1024). Returns 0 or LUAR_EINVAL.
 */
int luar_parse_size(const char *s, uint64_t *out);

/*
 * Parses a rate "N/period" (period s, m, h or d; "100/s", "5000/h", "0.5/s") into events per
 * second and the burst (N). Returns 0 or LUAR_EINVAL.
 */
int luar_parse_rate(const char *s, double *per_second, double *burst);

#endif
