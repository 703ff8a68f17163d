#include "common/units.h"
#include "common/error.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int luar_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        {"", 1},           {"B", 1},          {"K", 1024},       {"KB", 1000},
        {"KIB", 1024},     {"M", 1 << 20},    {"MB", 1000000},   {"MIB", 1 << 20},
        {"G", 1ull << 30}, {"GB", 1000000000}, {"GIB", 1ull << 30},
    };
    if (s == NULL)
        return LUAR_EINVAL;
    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return LUAR_EINVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || v < 0)
        return LUAR_EINVAL;
    while (isspace((unsigned char)*end))
        end++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            double r = v * (double)units[i].mult;
            if (r > 9.0e18)
                return LUAR_EINVAL;
            *out = (uint64_t)r;
            return 0;
        }
    }
    return LUAR_EINVAL;
}

int luar_parse_rate(const char *s, double *per_second, double *burst)
{
    if (s == NULL || !isdigit((unsigned char)*s))
        return LUAR_EINVAL;
    char *end;
    errno = 0;
    double n = strtod(s, &end);
    if (errno || n <= 0 || *end != '/')
        return LUAR_EINVAL;
    double period;
    if (strcmp(end + 1, "s") == 0)
        period = 1;
    else if (strcmp(end + 1, "m") == 0)
        period = 60;
    else if (strcmp(end + 1, "h") == 0)
        period = 3600;
    else if (strcmp(end + 1, "d") == 0)
        period = 86400;
    else
        return LUAR_EINVAL;
    *per_second = n / period;
    *burst = n < 1 ? 1 : n;
    return 0;
}
